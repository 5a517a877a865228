//! The built-in job kinds, for trying the system and for its own tests (see the contract).

use std::time::Duration;

use futures_util::future::Either;

use lro_common::kinds::{BATCH_CANCEL, FailInput, NoopInput, SleepInput, SpinInput};
use lro_common::status::Code;
use lro_common::time::{duration_json, parse_duration};
use serde_json::json;

use crate::job::{JobContext, JobError, JobResult, Kinds};

impl Kinds {
    /// The built-in kinds (`sleep`, `noop`, `fail`, `spin`, `uninterruptible`, `batch-cancel`).
    ///
    /// The input types (and so the schemas the api checks) live in `lro_common::kinds`, where the
    /// api knows them without a worker; the checks here repeat what a schema cannot say or what
    /// an operation accepted before schemas existed may still hold.
    pub fn builtin() -> Self {
        Self::new()
            .typed("sleep", |input, ctx| sleep(input, ctx, true))
            .typed_uncancellable("uninterruptible", |input, ctx| sleep(input, ctx, false))
            .typed("noop", |_: NoopInput, _ctx| async move { Ok(json!({})) })
            .typed("fail", |input, _ctx| async move { fail(input) })
            .typed("spin", spin)
            .typed(BATCH_CANCEL, crate::batch::run)
    }
}

/// Sleeps `duration` in `steps`, reporting progress after each; stops the instant its token
/// fires, unless it is the uninterruptible kind, which ignores its token.
fn sleep(
    input: SleepInput,
    ctx: JobContext,
    interruptible: bool,
) -> impl Future<Output = JobResult> {
    // The input is checked before the future is made, so only the plan is held while the job
    // sleeps (not the room for an error beside it).
    let kind = if interruptible {
        "sleep"
    } else {
        "uninterruptible"
    };
    let (total, steps) = match sleep_plan(kind, input) {
        Ok(plan) => plan,
        Err(e) => return Either::Left(std::future::ready(Err(e))),
    };
    Either::Right(async move {
        let step = total / steps;
        for i in 1..=steps {
            if interruptible {
                tokio::select! {
                    biased;
                    () = ctx.cancelled() => return Err(JobError::Cancelled),
                    () = tokio::time::sleep(step) => {}
                }
            } else {
                tokio::time::sleep(step).await;
            }
            ctx.progress(i * 100 / steps, format!("step {i} of {steps}"))
                .await;
        }
        Ok(json!({ "slept": duration_json(total) }))
    })
}

/// How long to sleep, in how many steps.
fn sleep_plan(kind: &str, input: SleepInput) -> Result<(Duration, u32), JobError> {
    let total = match input.duration.as_deref() {
        Some(d) => parse_duration(d).map_err(|e| JobError::invalid_input(kind, e))?,
        None => Duration::from_secs(1),
    };
    let steps = input.steps.unwrap_or(10);
    if !(1..=SleepInput::MAX_STEPS).contains(&steps) {
        return Err(JobError::invalid_input(
            kind,
            format!("steps must be 1 to {}", SleepInput::MAX_STEPS),
        ));
    }
    Ok((total, steps))
}

fn fail(input: FailInput) -> JobResult {
    let code = input.code.unwrap_or(Code::Internal.as_i32());
    match Code::from_i32(code) {
        Some(Code::Ok) | None => Err(JobError::invalid_input(
            "fail",
            format!("code {code} is not an error code (1-16)"),
        )),
        Some(code) => {
            let message = input.message.unwrap_or_else(|| "failed as asked".into());
            if input.retryable {
                Err(JobError::retry(code, message))
            } else {
                Err(JobError::new(code, message))
            }
        }
    }
}

/// Iterations per chunk of `spin`: between chunks the token is checked (about a millisecond).
const SPIN_CHUNK: u64 = 200_000;

/// CPU-bound work on the blocking pool, checking the token between chunks.
async fn spin(input: SpinInput, ctx: JobContext) -> JobResult {
    let token = ctx.token();
    let work = tokio::task::spawn_blocking(move || {
        let mut acc: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut done = 0;
        while done < input.iterations {
            if token.is_cancelled() {
                return Err(JobError::Cancelled);
            }
            let n = SPIN_CHUNK.min(input.iterations - done);
            for i in 0..n {
                acc = (acc ^ (done + i))
                    .wrapping_mul(0x100_0000_01B3)
                    .rotate_left(5);
            }
            done += n;
        }
        Ok(json!({ "iterations": input.iterations.to_string(), "checksum": acc.to_string() }))
    });
    work.await
        .unwrap_or_else(|e| Err(JobError::new(Code::Internal, format!("spin panicked: {e}"))))
}
