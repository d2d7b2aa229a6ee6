"""One optimisation step, with mixed precision on any device, seeding by iteration, and a
divergence check that stops every process together."""

import time

import torch
from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from pasa_det.data.resumable import derive_seed
from pasa_det.detectron2_versions import next_training_batch, write_metrics


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite, or the loss exploded; the weights were not
    updated with it."""


class TrainingStep(SimpleTrainer):
    """One optimisation step, as detectron2's SimpleTrainer and AMPTrainer take it, plus:

    - `precision` (None, "float16" or "bfloat16") autocasts on the model's device, the
      CPU included (detectron2's AMPTrainer is CUDA only); float16 scales the loss
      against underflow, bfloat16 has float32's range and needs no scaling;
    - a non-finite loss term in any process, non-finite predictions detectron2 found, or
      a total loss over `divergence_factor` times the first iteration's (gradient
      clipping keeps an exploding loss finite) raise NonFiniteLossError in every process
      before the weights change (detectron2 checks the main process only, after
      backward, leaving the others waiting);
    - with a `seed`, the global RNGs are seeded from (seed, iteration, rank) before each
      forward pass: the model's own draws (RPN and ROI sampling) then do not depend on
      what ran before, which a checkpoint does not record, so a resumed run draws as an
      uninterrupted one would, with or without data-loader workers.

    Its state (checkpointed as "trainer"): detectron2's (iteration, hooks, optimizer),
    the float16 loss scale and the first iteration's loss.
    """

    def __init__(
        self,
        model,
        data_loader,
        optimizer,
        precision=None,
        seed=None,
        divergence_factor=0.0,
        divergence_key="the divergence factor",
    ):
        """`divergence_key`: the setting `divergence_factor` came from, named in the error."""
        super().__init__(model, data_loader, optimizer)
        self.seed = seed
        self.divergence_factor, self.divergence_key = divergence_factor, divergence_key
        self.first_loss = None
        self.device_type = next(model.parameters()).device.type
        self.dtype = getattr(torch, precision) if precision else None
        self.grad_scaler = torch.amp.GradScaler(
            self.device_type, enabled=self.dtype == torch.float16
        )

    def run_step(self):
        assert self.model.training, "[TrainingStep] model was changed to eval mode!"
        start = time.perf_counter()
        data = next_training_batch(self)
        data_time = time.perf_counter() - start
        if self.seed is not None:
            seed_all_rng(derive_seed(self.seed, self.iter, comm.get_rank()))
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None):
            try:
                loss_dict = self.model(data)
            except FloatingPointError as e:  # detectron2's own check: boxes or scores Inf/NaN
                loss_dict, detectron2_error = {}, str(e)
            else:
                detectron2_error = ""
                if isinstance(loss_dict, torch.Tensor):
                    loss_dict = {"total_loss": loss_dict}
        self._check_finite(loss_dict, detectron2_error)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        write_metrics(loss_dict, data_time, self.iter)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def _check_finite(self, loss_dict, detectron2_error: str):
        """Every process raises, together, when any has a non-finite loss term or
        prediction, or the total loss (the mean over processes) exploded."""
        bad = {k: v.item() for k, v in loss_dict.items() if not torch.isfinite(v).all()}
        failed = bool(bad or detectron2_error)
        total = float(sum(v.detach() for v in loss_dict.values())) if not failed else float("nan")
        if comm.get_world_size() > 1:
            gathered = comm.all_gather((failed, total))
            failed = any(f for f, _ in gathered)
            total = sum(t for _, t in gathered) / len(gathered)
        exploded = False
        if not failed and self.divergence_factor:
            if self.first_loss is None:
                self.first_loss = total
            exploded = total > self.divergence_factor * abs(self.first_loss)
        if not (failed or exploded):
            return
        terms = ", ".join(f"{k}={v}" for k, v in bad.items())
        if detectron2_error:
            terms = f"detectron2: {detectron2_error.rstrip('.')}"
        if exploded:
            terms = (
                f"total loss {total:.3g}, over {self.divergence_key} "
                f"{self.divergence_factor:g} times the first iteration's {self.first_loss:.3g}"
            )
        raise NonFiniteLossError(
            f"training diverged at iteration {self.iter} ({terms or 'in another process'})"
        )

    def state_dict(self):
        state = super().state_dict()
        if self.grad_scaler.is_enabled():
            state["grad_scaler"] = self.grad_scaler.state_dict()
        if self.first_loss is not None:
            state["first_loss"] = self.first_loss
        return state

    def load_state_dict(self, state_dict):
        # Checkpoints of pasa_det before 2026-12 (and of detectron2 main's DefaultTrainer)
        # nest the step's state under "_trainer".
        state_dict = {**state_dict.get("_trainer", {}), **state_dict}
        super().load_state_dict(state_dict)
        if self.grad_scaler.is_enabled() and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
        self.first_loss = state_dict.get("first_loss", self.first_loss)
