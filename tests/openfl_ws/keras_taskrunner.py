# An OpenFL 1.9-style Keras task runner (OpenFL's API only): build_model returns a compiled model.
import keras

from openfl.federated import KerasTaskRunner


class KerasDense(KerasTaskRunner):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model = self.build_model(self.feature_shape, self.data_loader.num_classes, **kwargs)
        self.initialize_tensorkeys_for_functions()

    def build_model(self, input_shape, num_classes, dense_units=32, learning_rate=0.01, **kwargs):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input(shape=input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(dense_units, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ])
        model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(learning_rate),
                      metrics=["accuracy"])
        return model
