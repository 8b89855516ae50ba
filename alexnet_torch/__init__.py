"""The book's AlexNet in PyTorch: model.py, data.py, train.py."""
