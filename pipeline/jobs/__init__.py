"""What the command line and the DAG tasks call: train, detect, evaluate, retrain, gate."""
