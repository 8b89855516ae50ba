"""The book's AlexNet in MXNet (Gluon, NumPy interface): model.py, data.py, train.py."""
