from sensorwatch.pipeline.cli.app import main

main()
