//! The restart policy, as one unit (Nomad's `RestartTracker` plays this
//! part): after a run ends, whether the task starts again, after what
//! delay, or gives up. It only counts and decides; the supervisor acts.

use cerebro_types::{ExitStatus, TaskSpec};
use std::time::Duration;

/// What to do after a run ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// The end is final: the policy does not ask for a restart.
    Exit,
    /// The budget is spent after `restarts` consecutive restarts.
    GiveUp { restarts: u32 },
    /// Restart number `attempt` since the last healthy run, after `delay`
    /// (zero for the first one).
    Restart { attempt: u32, delay: Duration },
}

/// Counts restarts since the last healthy run (one that lived
/// `backoff.healthy_after_secs`); `max_restarts` bounds that count.
#[derive(Debug, Default)]
pub struct RestartTracker {
    consecutive: u32,
}

impl RestartTracker {
    /// Restarts since the last healthy run.
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// A start someone asked for: backoff and budget start over.
    pub fn reset(&mut self) {
        self.consecutive = 0;
    }

    /// Decides after a run that lived `lived` and ended with `status`;
    /// `violated` when it was stopped for breaking a limit.
    pub fn after_run(
        &mut self,
        spec: &TaskSpec,
        status: ExitStatus,
        violated: bool,
        lived: Duration,
    ) -> Decision {
        if lived.as_secs_f64() >= spec.backoff.healthy_after_secs {
            self.consecutive = 0;
        }
        let wanted = (spec.ensure_alive && !(spec.allow_exit && status.success()))
            || (spec.restart && violated);
        if !wanted {
            return Decision::Exit;
        }
        if spec.max_restarts >= 0 && i64::from(self.consecutive) >= spec.max_restarts {
            return Decision::GiveUp {
                restarts: self.consecutive,
            };
        }
        self.consecutive += 1;
        Decision::Restart {
            attempt: self.consecutive,
            delay: Duration::from_secs_f64(spec.backoff.delay_secs(self.consecutive)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(configure: impl FnOnce(&mut TaskSpec)) -> TaskSpec {
        let mut spec = TaskSpec::new("t", "true");
        configure(&mut spec);
        spec
    }

    #[test]
    fn ensure_alive_restarts_with_backoff_until_the_budget_is_spent() {
        let spec = spec(|s| {
            s.ensure_alive = true;
            s.max_restarts = 2;
        });
        let mut tracker = RestartTracker::default();
        let quick = Duration::from_millis(10);
        let fail = ExitStatus::Code(1);
        assert_eq!(
            tracker.after_run(&spec, fail, false, quick),
            Decision::Restart {
                attempt: 1,
                delay: Duration::ZERO
            }
        );
        assert_eq!(
            tracker.after_run(&spec, fail, false, quick),
            Decision::Restart {
                attempt: 2,
                delay: Duration::from_millis(100)
            }
        );
        assert_eq!(
            tracker.after_run(&spec, fail, false, quick),
            Decision::GiveUp { restarts: 2 }
        );
        // A healthy run starts the count over.
        let healthy = Duration::from_secs(11);
        assert!(matches!(
            tracker.after_run(&spec, fail, false, healthy),
            Decision::Restart { attempt: 1, .. }
        ));
        tracker.reset();
        assert_eq!(tracker.consecutive(), 0);
    }

    #[test]
    fn what_asks_for_a_restart() {
        let quick = Duration::from_millis(10);
        let clean = ExitStatus::Code(0);
        let mut tracker = RestartTracker::default();
        let plain = spec(|_| {});
        assert_eq!(
            tracker.after_run(&plain, clean, true, quick),
            Decision::Exit
        );
        let allow_exit = spec(|s| {
            s.ensure_alive = true;
            s.allow_exit = true;
        });
        assert_eq!(
            tracker.after_run(&allow_exit, clean, false, quick),
            Decision::Exit
        );
        let on_violation = spec(|s| s.restart = true);
        assert_eq!(
            tracker.after_run(&on_violation, ExitStatus::Signal(9), false, quick),
            Decision::Exit
        );
        assert!(matches!(
            tracker.after_run(&on_violation, ExitStatus::Signal(9), true, quick),
            Decision::Restart { .. }
        ));
    }
}
