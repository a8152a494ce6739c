//! The distillation objective (Hinton et al., 2015): forward KL from the teacher's
//! temperature-softened distribution to the student's, scaled by T² so its gradients keep their
//! size as T changes, optionally mixed with ordinary next-token cross-entropy.

use candle_core::{Tensor, D};

use crate::error::{DistillError, Result};

/// The loss of one sequence, and its parts for logging.
pub struct LossParts {
    /// What is differentiated: `(1 - alpha) * T² * KL + alpha * CE`.
    pub total: Tensor,
    /// KL(teacher_T ‖ student_T) per position, nats, unscaled.
    pub kl: f32,
    /// Next-token cross-entropy per position, nats (computed even when alpha is 0: it is the
    /// student's own perplexity on the training text, worth watching).
    pub ce: f32,
}

/// `student` and `teacher` are (T, vocab) logits of one sequence; `tokens` its T ids.
pub fn distillation_loss(
    student: &Tensor,
    teacher: &Tensor,
    tokens: &[u32],
    temperature: f64,
    alpha: f64,
) -> Result<LossParts> {
    if student.dims() != teacher.dims() {
        return Err(DistillError::Invalid(format!(
            "student logits {:?} and teacher logits {:?} differ in shape",
            student.dims(),
            teacher.dims()
        )));
    }
    if temperature.is_nan() || temperature <= 0.0 || !(0.0..=1.0).contains(&alpha) {
        return Err(DistillError::Invalid(format!(
            "temperature must be > 0 and alpha in [0, 1] (got {temperature}, {alpha})"
        )));
    }
    let teacher = teacher.detach();
    let log_p_student = candle_nn::ops::log_softmax(&(student / temperature)?, D::Minus1)?;
    let log_p_teacher = candle_nn::ops::log_softmax(&(teacher / temperature)?, D::Minus1)?;
    let kl = (log_p_teacher.exp()? * (log_p_teacher - &log_p_student)?)?
        .sum(D::Minus1)?
        .mean_all()?;
    let t = tokens.len();
    let ce = if t > 1 {
        let targets = Tensor::new(&tokens[1..], student.device())?;
        Some(candle_nn::loss::cross_entropy(
            &student.narrow(0, 0, t - 1)?,
            &targets,
        )?)
    } else {
        None
    };
    let kd_term = (&kl * ((1.0 - alpha) * temperature * temperature))?;
    let total = match (&ce, alpha > 0.0) {
        (Some(ce), true) => (kd_term + (ce * alpha)?)?,
        _ => kd_term,
    };
    Ok(LossParts {
        total,
        kl: kl.to_scalar::<f32>()?,
        ce: match ce {
            Some(ce) => ce.to_scalar::<f32>()?,
            None => f32::NAN,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn kl_is_zero_for_identical_logits_and_positive_otherwise() {
        let a = Tensor::new(&[[1.0f32, 2.0, 3.0], [0.5, 0.1, -1.0]], &Device::Cpu).unwrap();
        let same = distillation_loss(&a, &a, &[0, 1], 2.0, 0.0).unwrap();
        assert!(same.kl.abs() < 1e-6, "{}", same.kl);
        let b = Tensor::new(&[[3.0f32, 2.0, 1.0], [0.5, 0.1, -1.0]], &Device::Cpu).unwrap();
        let diff = distillation_loss(&a, &b, &[0, 1], 1.0, 0.0).unwrap();
        // Row 0: KL(softmax(3,2,1) || softmax(1,2,3)), row 1: 0; mean over both rows.
        let p = [0.665241f64, 0.244728, 0.090031];
        let expected = (p[0] * (p[0] / p[2]).ln() + p[2] * (p[2] / p[0]).ln()) / 2.0;
        assert!(
            (diff.kl as f64 - expected).abs() < 1e-4,
            "{} vs {expected}",
            diff.kl
        );
        let total = diff.total.to_scalar::<f32>().unwrap();
        assert!(
            (total - diff.kl).abs() < 1e-6,
            "T=1, alpha=0: total is the KL"
        );
    }
}
