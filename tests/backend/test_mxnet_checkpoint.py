"""MXNet's own checkpoint holds the trainer's state too, as arrays (never pickled)."""

import numpy as np
import pytest

from common.errors import UserError
from common.hparams import HParams
from common.spec import MIN_RESIZE


@pytest.fixture
def mxnet_backend(backend):
    if backend != "mxnet":
        pytest.skip("MXNet's own checkpoint format (the others store their optimizer's state natively)")


@pytest.mark.parametrize("devices", [1, 2])
def test_a_checkpoint_restores_the_trainer_state(mxnet_backend, tmp_path, devices):
    import mxnet as mx
    from mxnet import gluon

    from alexnet_mxnet import model, parallel, step, train

    where = parallel.replicas(devices, "cpu")
    hp = HParams(resize=MIN_RESIZE, batch_size=8)

    def fresh(optimizer: str = "sgd", **options):
        net, _ = train.build(hp, where)
        trainer = gluon.Trainer(net.collect_params(), optimizer, {"learning_rate": 0.01, **options},
                                kvstore="device")
        return net, trainer, parallel.make_step(step.without_dropout(net), trainer, where)

    X = mx.np.random.uniform(size=(8, 1, MIN_RESIZE, MIN_RESIZE), ctx=where.device)
    y = mx.np.arange(8, dtype=np.int64, ctx=where.device) % 10
    net, trainer, go_on = fresh(momentum=0.9)  # momentum: state arrays that change the next steps
    for _ in range(2):
        go_on(X, y, 8)
    train.save_checkpoint(tmp_path / "c.params", net, trainer, 2)
    net2, trainer2, resumed = fresh(momentum=0.9)
    assert train.load_checkpoint(tmp_path / "c.params", net2, trainer2) == 2
    assert trainer2._optimizer.num_update == trainer._optimizer.num_update == 2
    for _ in range(2):
        go_on(X, y, 8)
        resumed(X, y, 8)
    with where.device:
        a, b = model.get_weights(net), model.get_weights(net2)
    for name, w in a.items():
        np.testing.assert_array_equal(b[name], w, err_msg=name)
    adam, trainer3, go = fresh("adam")
    go(X, y, 8)
    with pytest.raises(UserError, match="not one array"):
        train.save_checkpoint(tmp_path / "a.params", adam, trainer3, 1)
