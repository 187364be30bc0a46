import pytest
import torch

from binsr.nn import checkpoint
from binsr.nn.models import DIV2K_RGB_MEAN, create_model
from binsr.training.distill import check_settings, distillation, load_teacher
from binsr.training.train import _Loss

TINY = {"scale": 2, "n_feats": 4, "n_blocks": 2}


def _pair(teacher_feats: int = 4, teacher_name: str = "edsr-fp"):
    torch.manual_seed(0)
    student = create_model("edsr-bbcu", **TINY)
    teacher = create_model(teacher_name, **{**TINY, "n_feats": teacher_feats}).requires_grad_(False).eval()
    return student, teacher


def test_the_term_is_the_analytic_l1_between_student_and_teacher_outputs():
    # tails with zero weights: the student's output is the RGB mean m (bias 0), the teacher's m + b (k = 1)
    student, teacher = _pair()
    bias = torch.tensor([0.25, -0.5, 0.125])
    for model, tail_bias in ((student, torch.zeros(3)), (teacher, bias)):
        model.tail.weight.data.zero_()
        model.tail.bias.data.copy_(tail_bias)
    lr, hr = torch.rand(3, 3, 5, 6), torch.full((3, 3, 10, 12), 0.5)
    with distillation(student, teacher, weight=2.0) as term:
        loss = _Loss(student, compile=False, teacher=teacher, distill=term)(lr, hr)
    to_hr = sum(abs(m - 0.5) for m in DIV2K_RGB_MEAN) / 3  # L1(student, HR)
    to_teacher = (0.25 + 0.5 + 0.125) / 3  # L1(student, teacher) = mean |b|
    assert loss.item() == pytest.approx(to_hr + 2.0 * to_teacher, rel=1e-6)


def _block_outputs_by_hand(model, lr):
    """Head, then one block after the other, each output divided by the model's k."""
    h = model.head((lr - model.rgb_mean) * model.k)
    outputs = []
    for block in list(model.body)[:-1]:
        h = block(h)
        outputs.append(h / model.k)
    return outputs


def _cosine_distance(s, t):
    cos = (s * t).sum(1) / (s.pow(2).sum(1).sqrt() * t.pow(2).sum(1).sqrt())
    return (1 - cos).mean()


@pytest.mark.parametrize("features", ["l1", "cosine"])
def test_feature_distillation_is_the_mean_block_distance_computed_by_hand(features):
    student, teacher = _pair()
    assert student.k == 130 * 4 / 64 and teacher.k == 1.0  # BBCU's amplification (14) at 4 channels; none
    lr = torch.rand(2, 3, 6, 5)
    distance = {"l1": lambda s, t: (s - t).abs().mean(), "cosine": _cosine_distance}[features]
    pairs = zip(_block_outputs_by_hand(student, lr), _block_outputs_by_hand(teacher, lr), strict=True)
    expected = 0.5 * sum(distance(s, t) for s, t in pairs) / 2
    with distillation(student, teacher, weight=0.5, features=features) as term:
        value = term(student(lr), teacher(lr))
        assert value.item() == pytest.approx(expected.item(), rel=1e-5)
        value.backward()  # the term trains the student's body
        assert student.head.weight.grad.abs().sum() > 0
    assert not any(block._forward_hooks or block._forward_pre_hooks for block in student.body)


def test_feature_distillation_refuses_bodies_of_another_shape_with_one_line():
    student, wider = _pair(teacher_feats=8)
    with pytest.raises(ValueError) as refused, distillation(student, wider, 1.0, "l1"):
        pass
    assert str(refused.value) == (
        "feature distillation needs two EDSR bodies of one shape; the student's is 4 channels x 2 blocks, the "
        "teacher's 8 channels x 2 blocks; expected the same (or output distillation)"
    )
    _, srresnet = _pair(teacher_name="srresnet-fp")
    not_edsr = "the teacher's not an EDSR body; expected the same"
    with pytest.raises(ValueError, match=not_edsr), distillation(student, srresnet, 1.0, "cosine"):
        pass
    with distillation(student, wider, 1.0) as term:  # the outputs have one shape: output distillation works
        assert term(student(torch.rand(1, 3, 4, 4)), wider(torch.rand(1, 3, 4, 4))).item() > 0


def test_settings_are_checked_with_one_line_each():
    with pytest.raises(ValueError, match=r"^distill_weight=-1.0; expected a finite weight >= 0$"):
        check_settings("edsr-fp-x2", -1.0, None)
    with pytest.raises(ValueError, match=r"^distill_weight=nan; expected a finite weight >= 0$"):
        check_settings("edsr-fp-x2", float("nan"), None)
    with pytest.raises(ValueError, match=r"^distill_features='l2'; expected one of l1, cosine or none$"):
        check_settings("edsr-fp-x2", 1.0, "l2")
    with pytest.raises(ValueError, match=r"^distill_features='l1' needs a teacher; expected --teacher as well$"):
        check_settings(None, 1.0, "l1")
    with pytest.raises(ValueError, match=r"^distill_weight=0.5 needs a teacher; expected --teacher as well$"):
        check_settings(None, 0.5, None)
    check_settings(None, 1.0, None)


def test_a_teacher_is_frozen_in_eval_mode_leaves_the_random_state_and_must_match_the_scale(tmp_path):
    torch.manual_seed(0)
    path = checkpoint.save(tmp_path / "fp-x4.pt", create_model("edsr-fp", scale=4, n_feats=4, n_blocks=1))
    state = torch.get_rng_state()
    teacher = load_teacher(str(path), 4, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match=r"^teacher .*fp-x4\.pt is an x4 model; expected x2, the scale of the run$"):
        load_teacher(str(path), 2, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"^teacher edsr-fp-x2 is an x2 model; expected x4, the scale of the run$"):
        load_teacher("edsr-fp-x2", 4, torch.device("cpu"))  # a shipped one
