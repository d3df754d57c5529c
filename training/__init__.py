"""Training of the residual 3D U-Net (JoVE 67781). Needs the ``train`` extra (torch).

Importing this package does not import torch; modules that need it call
:func:`training.torch_import.require_torch`.

Modules (one job each):

- ``config``      typed config, paper defaults cited, ``--set key=value`` overrides, hash;
                  the defaults as a file: ``training/configs/default.toml``.
- ``dataset``     dataset folders (``images/``, ``labels/``, ``dataset.json`` with split,
                  annotated structures, provenance); phantoms.
- ``itksnap``     finding cases in a folder (pairs, case folders, DICOM series) and
                  ITK-SNAP label descriptions mapped to structures by name.
- ``importer``    ``wbspine dataset import``: every case checked, then written.
- ``totalseg``    the real TotalSegmentator example CT as a case. Its labels are another
                  model's output (**pseudo-labels**), marked so in the manifest and reports.
- ``augment``     16-slice windows, x/y translation, rotation about z (image and label
                  with one transform), t ~ U(1000, 3000), brightness, Poisson noise.
- ``data``        cases resampled once to the working spacing (appliance.preprocess) and
                  cached; deterministic windows per (seed, epoch, index); DataLoader.
- ``model``       residual 3D U-Net, 4 deep-supervision outputs in training, full-resolution
                  logits only in eval/export.
- ``losses``      partial-label soft Dice (unannotated structures ignored) and
                  ``loss_3 + alpha (loss_0 + loss_1 + loss_2)``.
- ``loop``        Adam + paper schedules, progress bar, CSV/TensorBoard, last/best
                  checkpoints with exact resume, AMP on CUDA, DDP via torchrun.
- ``checkpoint``  checkpoint content (what export needs) and ``model_from_checkpoint``.
- ``weights``     trainable weights as safetensors (the bundle's ``weights`` file).
- ``init_from``   ``--init-from``: start from a bundle's or checkpoint's weights, refusing
                  a config whose network differs.
- ``evaluate``    simple sliding window and the Table-3 report (appliance.metrics).
- ``cli``         ``wbspine train``, ``wbspine dataset ...``, ``wbspine evaluate``.

Typical use::

    wbspine dataset from-phantoms --out datasets/phantoms --n 40 --seed 0 --partial
    wbspine dataset import-totalseg --out datasets/phantoms          # pseudo-labels
    wbspine dataset import my_snap_cases --out datasets/mine --labels-file my_snap_cases/labels.txt
    wbspine train --config training/configs/default.toml --set train.epochs=50
    torchrun --nproc-per-node 4 -m appliance.cli train --config my.toml   # multi-GPU
    wbspine evaluate runs/default/best.pt --out runs/default/eval
    wbspine train --config training/configs/default_model.toml --init-from appliance/models/default
"""
