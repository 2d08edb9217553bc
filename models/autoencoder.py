"""The LSTM autoencoder, in Keras 3 only, so it builds on TensorFlow, JAX or PyTorch alike."""

from __future__ import annotations

from sensorwatch.models.backend import keras


def build_autoencoder(
    window: int,
    channels: int,
    units: int = 64,
    latent: int | None = None,
    use_cudnn: bool | str = "auto",
) -> keras.Model:
    """An LSTM encoder to a latent vector, repeated over the window, and an LSTM decoder.

    The LSTM layers keep Keras' defaults (tanh, sigmoid gates, no recurrent dropout, not
    unrolled), which is what makes them eligible for the fused cuDNN kernel on a GPU; ``use_cudnn``
    (Keras' own switch) can turn it off, to measure what it brings.

    >>> build_autoencoder(30, 8).output_shape
    (None, 30, 8)
    """
    latent = latent or max(units // 2, 2)
    inputs = keras.Input(shape=(window, channels), name="window")
    x = keras.layers.LSTM(units, name="encoder", use_cudnn=use_cudnn)(inputs)
    x = keras.layers.Dense(latent, activation="tanh", name="latent")(x)
    x = keras.layers.RepeatVector(window, name="repeat")(x)
    x = keras.layers.LSTM(units, return_sequences=True, name="decoder", use_cudnn=use_cudnn)(x)
    # float32 output even under a mixed-precision policy, so losses stay stable.
    outputs = keras.layers.TimeDistributed(
        keras.layers.Dense(channels, dtype="float32"), name="reconstruction"
    )(x)
    return keras.Model(inputs, outputs, name="lstm_autoencoder")
