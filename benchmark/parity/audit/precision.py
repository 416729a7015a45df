"""Precision: mixed-precision policy and loss scaling of each trainer."""

from __future__ import annotations

from benchmark.parity.audit.arms import Arms, Finding


def check_precision(a: Arms) -> list[Finding]:
    t, k = a.torch, a.keras
    device = t.device.type if hasattr(t.device, "type") else str(t.device)
    t_dtype = str(t.amp_dtype).replace("torch.", "") if t.amp else "float32"
    k_dtype = k.reduced_dtype or "float32"
    t_desc = f"autocast {'on' if t.amp else 'off'}" + (f" ({t_dtype})" if t.amp else "") + f" on {device}"
    k_desc = f"policy {k.model.dtype_policy.name}" + f" on {k.device}"
    same = t_dtype == k_dtype
    scaling_t, scaling_k = bool(t.scaler.is_enabled()), bool(k.loss_scaling)
    return [
        Finding("Precision", f"compute dtype (precision={a.cfg.precision.name})", t_desc, k_desc, same,
                "same compute precision" if same else "different compute precision"),
        Finding("Precision", "loss scaling", "GradScaler " + ("on" if scaling_t else "off"),
                "LossScaleOptimizer " + ("on" if scaling_k else "off"), scaling_t == scaling_k,
                "same" if scaling_t == scaling_k else "only one arm scales the loss"),
        Finding("Precision", "what a GPU run uses (backend code)",
                f"autocast {a.cfg.precision.dtype} + GradScaler when precision.mixed" if a.cfg.precision.mixed
                else "float32", f"mixed_{a.cfg.precision.dtype} + LossScaleOptimizer when precision.mixed"
                if a.cfg.precision.mixed else "float32", True,
                "the audit measured the device above; on a CPU both use bfloat16 without loss scaling for amp",
                kind="info"),
    ]
