"""Training as in the seeds: overfitting a small generated set, then sampling it back."""
import numpy as np

from fastcap import CaptioningRNN, CaptioningSolver
from fastcap.data.generated import generate_coco_data


def test_lstm_overfits_50_captions_and_samples_them_back(backend):
    data = generate_coco_data(num_train_images=50, num_val_images=5, captions_per_image=5, seed=3)
    # 50 training captions from 50 different images: the first caption of each.
    first = np.unique(data["train_image_idxs"], return_index=True)[1]
    small = dict(data, train_captions=data["train_captions"][first],
                 train_image_idxs=data["train_image_idxs"][first])
    assert len(np.unique(small["train_image_idxs"])) == 50
    np.random.seed(231)
    model = CaptioningRNN(cell_type="lstm", word_to_idx=data["word_to_idx"],
                          input_dim=data["train_features"].shape[1], hidden_dim=512,
                          wordvec_dim=256, dtype=np.float32)
    solver = CaptioningSolver(model, small, update_rule="adam", num_epochs=50, batch_size=25,
                              optim_config={"learning_rate": 5e-3}, lr_decay=0.995, verbose=False)
    solver.train()
    assert len(solver.loss_history) == 100
    assert solver.loss_history[-1] < 0.5, solver.loss_history[-10:]

    gt = small["train_captions"]
    samples = model.sample(small["train_features"][small["train_image_idxs"]], max_length=gt.shape[1] - 1)
    scored = gt[:, 1:] != model._null  # the words and <END>, as the loss scores them
    accuracy = (samples == gt[:, 1:])[scored].mean()
    assert accuracy >= 0.9, accuracy
