//! The process manager's decisions, as a pure function of a pipeline's steps: which step to
//! request, fail or cancel now. No I/O here, so every rule is unit-tested on its own and the
//! same state always gives the same decisions (what makes a redelivered event harmless).

use std::collections::{HashMap, HashSet};

use roar_schemas::pipeline::PipelineStep;

/// Where a step stands, as the manager knows it. `Waiting`: not requested yet (its upstream
/// has not finished). The manager moves a step out of `Waiting` (requested, failed for its
/// upstream or canceled); its job's own terminal event moves a requested step to the end.
/// `Failed` is a job's own failure; `UpstreamFailed` is the manager's verdict on a step that
/// never ran, undone when the failed upstream job completes after all (an admin retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Waiting,
    Requested,
    Completed,
    Failed,
    UpstreamFailed,
    Canceled,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Waiting => "waiting",
            StepState::Requested => "requested",
            StepState::Completed => "completed",
            StepState::Failed => "failed",
            StepState::UpstreamFailed => "upstream_failed",
            StepState::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => StepState::Waiting,
            "requested" => StepState::Requested,
            "completed" => StepState::Completed,
            "failed" => StepState::Failed,
            "upstream_failed" => StepState::UpstreamFailed,
            "canceled" => StepState::Canceled,
            _ => return None,
        })
    }
}

/// How a job ended, as a terminal event on `roar.job-events.v1` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// `JobCompleted`, or `JobSkipped` (its outputs already existed): dependents may run.
    Done,
    Failed,
    Canceled,
}

/// A step with its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub def: PipelineStep,
    pub state: StepState,
}

/// What the manager does for one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Emit the step's `JobRequested`.
    Request { step: String },
    /// Emit `JobFailed {code: upstream_failed}`: the step's upstream `upstream_step` (job
    /// `upstream_job`) failed, or was itself failed for its own upstream.
    Fail {
        step: String,
        upstream_step: String,
        upstream_job: String,
    },
    /// Emit `JobCanceled` with `reason`.
    Cancel { step: String, reason: String },
}

impl Action {
    pub fn step(&self) -> &str {
        match self {
            Action::Request { step } | Action::Fail { step, .. } | Action::Cancel { step, .. } => {
                step
            }
        }
    }

    /// The state the step is in once the action's event is out.
    pub fn next_state(&self) -> StepState {
        match self {
            Action::Request { .. } => StepState::Requested,
            Action::Fail { .. } => StepState::UpstreamFailed,
            Action::Cancel { .. } => StepState::Canceled,
        }
    }
}

/// Why a pipeline cannot be run as asked (it goes to the dead-letter topic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a pipeline needs at least one step")]
    Empty,
    #[error("step name {0:?} is used twice")]
    DuplicateName(String),
    #[error("step {step:?} reads step {upstream:?}, which is not in the pipeline")]
    UnknownUpstream { step: String, upstream: String },
    #[error("the steps' inputs form a cycle through {0:?}")]
    Cycle(String),
    #[error("step {step:?}: {reason}")]
    BadStep { step: String, reason: String },
}

/// Checks the shape of a pipeline's steps: unique names, every input names a step, no cycle.
pub fn validate(steps: &[PipelineStep]) -> Result<(), PlanError> {
    if steps.is_empty() {
        return Err(PlanError::Empty);
    }
    let mut upstream: HashMap<&str, Option<&str>> = HashMap::new();
    for s in steps {
        if upstream
            .insert(&s.name, s.input.as_ref().map(|i| i.step.as_str()))
            .is_some()
        {
            return Err(PlanError::DuplicateName(s.name.clone()));
        }
    }
    for s in steps {
        if let Some(i) = &s.input {
            if !upstream.contains_key(i.step.as_str()) {
                return Err(PlanError::UnknownUpstream {
                    step: s.name.clone(),
                    upstream: i.step.clone(),
                });
            }
        }
        // Each step has at most one upstream: following the chain must end within n steps.
        let mut seen = HashSet::new();
        let mut at = s.name.as_str();
        while let Some(Some(up)) = upstream.get(at) {
            if !seen.insert(at) {
                return Err(PlanError::Cycle(s.name.clone()));
            }
            at = up;
        }
    }
    Ok(())
}

/// Records `outcome` for every step whose job is `job_id`; returns whether anything changed.
/// A step's first end stays, with one exception: a failed step whose job completes after all
/// (an admin retry, or a request of the same job from elsewhere) is completed, and the steps
/// failed for it (`UpstreamFailed`, never run) wait again, so [`advance`] requests them. A
/// failure or cancel after the first end changes nothing (the manager's own events included).
pub fn record_outcome(steps: &mut [Step], job_id: &str, outcome: JobOutcome) -> bool {
    let mut changed = false;
    let mut revived = false;
    for s in steps.iter_mut().filter(|s| s.def.job_id == job_id) {
        match (s.state, outcome) {
            (StepState::Waiting | StepState::Requested, _) => {
                s.state = match outcome {
                    JobOutcome::Done => StepState::Completed,
                    JobOutcome::Failed => StepState::Failed,
                    JobOutcome::Canceled => StepState::Canceled,
                };
                changed = true;
            }
            (StepState::Failed | StepState::UpstreamFailed, JobOutcome::Done) => {
                s.state = StepState::Completed;
                changed = true;
                revived = true;
            }
            _ => {}
        }
    }
    if revived {
        revive(steps);
    }
    changed
}

/// Moves every `UpstreamFailed` step whose upstream no longer failed back to `Waiting`, until
/// none is left: a revived upstream revives its whole failed subtree.
fn revive(steps: &mut [Step]) {
    loop {
        let due = steps.iter().position(|s| {
            s.state == StepState::UpstreamFailed
                && s.def.input.as_ref().is_some_and(|i| {
                    steps.iter().any(|u| {
                        u.def.name == i.step
                            && matches!(
                                u.state,
                                StepState::Waiting | StepState::Requested | StepState::Completed
                            )
                    })
                })
        });
        match due {
            Some(i) => steps[i].state = StepState::Waiting,
            None => return,
        }
    }
}

/// The actions due now, applied to `steps` (their states move), in step order and until
/// nothing more is due, so a failure or cancellation reaches every transitive dependent at
/// once. `canceled`: the pipeline's cancel reason, once it was canceled.
pub fn advance(steps: &mut [Step], canceled: Option<&str>) -> Vec<Action> {
    let mut actions = Vec::new();
    loop {
        let mut due = None;
        for (i, s) in steps.iter().enumerate() {
            if s.state != StepState::Waiting {
                continue;
            }
            let action = if let Some(reason) = canceled {
                // Named like an upstream's cancel would name it: which of the two events the
                // manager reads first (the pipeline's cancel or the upstream job's) is a race
                // between two topics, and the cause should read the same either way.
                let waited = s
                    .def
                    .input
                    .as_ref()
                    .and_then(|i| steps.iter().find(|u| u.def.name == i.step))
                    .map(|up| {
                        format!(
                            "; it waited on upstream job {} (step {})",
                            up.def.job_id, up.def.name
                        )
                    })
                    .unwrap_or_default();
                Some(Action::Cancel {
                    step: s.def.name.clone(),
                    reason: format!("pipeline canceled: {reason}{waited}"),
                })
            } else {
                match &s.def.input {
                    None => Some(Action::Request {
                        step: s.def.name.clone(),
                    }),
                    Some(input) => steps
                        .iter()
                        .find(|u| u.def.name == input.step)
                        .and_then(|up| match up.state {
                            StepState::Completed => Some(Action::Request {
                                step: s.def.name.clone(),
                            }),
                            StepState::Failed | StepState::UpstreamFailed => Some(Action::Fail {
                                step: s.def.name.clone(),
                                upstream_step: up.def.name.clone(),
                                upstream_job: up.def.job_id.clone(),
                            }),
                            StepState::Canceled => Some(Action::Cancel {
                                step: s.def.name.clone(),
                                reason: format!(
                                    "upstream job {} (step {}) was canceled",
                                    up.def.job_id, up.def.name
                                ),
                            }),
                            StepState::Waiting | StepState::Requested => None,
                        }),
                }
            };
            if let Some(a) = action {
                due = Some((i, a));
                break;
            }
        }
        let Some((i, action)) = due else {
            return actions;
        };
        steps[i].state = action.next_state();
        actions.push(action);
    }
}

#[cfg(test)]
mod tests {
    use roar_schemas::pipeline::PipelineStepInput;

    use super::*;

    fn def(name: &str, input: Option<&str>) -> PipelineStep {
        PipelineStep {
            name: name.into(),
            job_id: format!("j-{name}"),
            model: "pitch".into(),
            variation: "tiny".into(),
            model_version: "v1".into(),
            params_json: "{}".into(),
            input: input.map(|step| PipelineStepInput {
                step: step.into(),
                output: "vocals".into(),
            }),
        }
    }

    /// separate → transcribe → align, separate → pitch.
    fn karaoke() -> Vec<Step> {
        [
            ("separate", None),
            ("transcribe", Some("separate")),
            ("align", Some("transcribe")),
            ("pitch", Some("separate")),
        ]
        .into_iter()
        .map(|(n, i)| Step {
            def: def(n, i),
            state: StepState::Waiting,
        })
        .collect()
    }

    fn states(steps: &[Step]) -> Vec<StepState> {
        steps.iter().map(|s| s.state).collect()
    }

    #[test]
    fn roots_first_then_dependents_once_their_upstream_is_done() {
        use StepState::*;
        let mut steps = karaoke();
        let a = advance(&mut steps, None);
        assert_eq!(
            a,
            [Action::Request {
                step: "separate".into()
            }]
        );
        // Asking again changes nothing: a redelivered event emits nothing new.
        assert!(advance(&mut steps, None).is_empty());
        assert!(record_outcome(&mut steps, "j-separate", JobOutcome::Done));
        let a = advance(&mut steps, None);
        let names: Vec<&str> = a.iter().map(Action::step).collect();
        assert_eq!(names, ["transcribe", "pitch"]);
        assert_eq!(states(&steps), [Completed, Requested, Waiting, Requested]);
        // Another job's outcome touches nothing.
        assert!(!record_outcome(&mut steps, "j-other", JobOutcome::Failed));
        record_outcome(&mut steps, "j-transcribe", JobOutcome::Done);
        assert_eq!(
            advance(&mut steps, None),
            [Action::Request {
                step: "align".into()
            }]
        );
    }

    #[test]
    fn a_failure_fails_every_transitive_dependent_naming_its_upstream() {
        use StepState::*;
        let mut steps = karaoke();
        advance(&mut steps, None);
        record_outcome(&mut steps, "j-separate", JobOutcome::Failed);
        let a = advance(&mut steps, None);
        assert_eq!(
            a,
            [
                Action::Fail {
                    step: "transcribe".into(),
                    upstream_step: "separate".into(),
                    upstream_job: "j-separate".into()
                },
                Action::Fail {
                    step: "align".into(),
                    upstream_step: "transcribe".into(),
                    upstream_job: "j-transcribe".into()
                },
                Action::Fail {
                    step: "pitch".into(),
                    upstream_step: "separate".into(),
                    upstream_job: "j-separate".into()
                },
            ]
        );
        assert_eq!(
            states(&steps),
            [Failed, UpstreamFailed, UpstreamFailed, UpstreamFailed]
        );
        // The manager's own JobFailed coming back does not move anything.
        assert!(!record_outcome(&mut steps, "j-align", JobOutcome::Failed));
    }

    #[test]
    fn a_failed_upstream_that_completes_after_all_revives_its_dependents() {
        use StepState::*;
        let mut steps = karaoke();
        advance(&mut steps, None);
        record_outcome(&mut steps, "j-separate", JobOutcome::Failed);
        advance(&mut steps, None);
        // A late failure of the failed job (a redelivery) changes nothing.
        assert!(!record_outcome(
            &mut steps,
            "j-separate",
            JobOutcome::Failed
        ));
        // An admin retry of the separation completes: its whole subtree waits again, and the
        // direct dependents are requested; the deeper one waits for its own upstream.
        assert!(record_outcome(&mut steps, "j-separate", JobOutcome::Done));
        assert_eq!(states(&steps), [Completed, Waiting, Waiting, Waiting]);
        let a = advance(&mut steps, None);
        let names: Vec<&str> = a.iter().map(Action::step).collect();
        assert_eq!(names, ["transcribe", "pitch"]);
        assert!(a.iter().all(|a| matches!(a, Action::Request { .. })));
        assert_eq!(states(&steps), [Completed, Requested, Waiting, Requested]);
        record_outcome(&mut steps, "j-transcribe", JobOutcome::Done);
        assert_eq!(
            advance(&mut steps, None),
            [Action::Request {
                step: "align".into()
            }]
        );
        // A redelivered completion requests nothing twice.
        assert!(!record_outcome(&mut steps, "j-separate", JobOutcome::Done));
        assert!(advance(&mut steps, None).is_empty());

        // A step failed for its upstream whose own job is completed elsewhere revives the
        // steps below it too, but not its failed upstream.
        let mut steps = karaoke();
        advance(&mut steps, None);
        record_outcome(&mut steps, "j-separate", JobOutcome::Failed);
        advance(&mut steps, None);
        assert!(record_outcome(&mut steps, "j-transcribe", JobOutcome::Done));
        assert_eq!(states(&steps), [Failed, Completed, Waiting, UpstreamFailed]);
        let a = advance(&mut steps, None);
        assert_eq!(
            a,
            [Action::Request {
                step: "align".into()
            }]
        );
        // A canceled step is not revived by anything.
        let mut steps = karaoke();
        advance(&mut steps, Some("stop"));
        assert!(!record_outcome(
            &mut steps,
            "j-transcribe",
            JobOutcome::Done
        ));
    }

    #[test]
    fn an_upstream_cancel_or_a_pipeline_cancel_cancels_what_was_not_requested() {
        use StepState::*;
        let mut steps = karaoke();
        advance(&mut steps, None);
        record_outcome(&mut steps, "j-separate", JobOutcome::Done);
        advance(&mut steps, None);
        record_outcome(&mut steps, "j-transcribe", JobOutcome::Canceled);
        let a = advance(&mut steps, None);
        assert!(matches!(&a[..], [Action::Cancel { step, reason }]
            if step == "align" && reason.contains("j-transcribe")));
        assert_eq!(states(&steps), [Completed, Canceled, Canceled, Requested]);

        let mut steps = karaoke();
        advance(&mut steps, None);
        let a = advance(&mut steps, Some("changed my mind"));
        let names: Vec<&str> = a.iter().map(Action::step).collect();
        assert_eq!(names, ["transcribe", "align", "pitch"]);
        assert!(
            matches!(&a[0], Action::Cancel { reason, .. } if reason.contains("changed my mind"))
        );
        // Each names the step it waited on, as an upstream's own cancel would.
        for (a, up) in a.iter().zip(["j-separate", "j-transcribe", "j-separate"]) {
            assert!(
                matches!(a, Action::Cancel { reason, .. } if reason.contains(up)),
                "{a:?}"
            );
        }
        // The running root is left to its worker (the control topic's CancelRequested); its
        // completion after the cancel requests nothing.
        record_outcome(&mut steps, "j-separate", JobOutcome::Done);
        assert!(advance(&mut steps, Some("changed my mind")).is_empty());
        assert_eq!(states(&steps), [Completed, Canceled, Canceled, Canceled]);
    }

    #[test]
    fn states_round_trip_through_their_names() {
        use StepState::*;
        for s in [
            Waiting,
            Requested,
            Completed,
            Failed,
            UpstreamFailed,
            Canceled,
        ] {
            assert_eq!(StepState::parse(s.as_str()), Some(s));
        }
        assert_eq!(StepState::parse("lost"), None);
    }

    #[test]
    fn malformed_pipelines_are_refused() {
        assert_eq!(validate(&[]), Err(PlanError::Empty));
        let ok: Vec<PipelineStep> = karaoke().into_iter().map(|s| s.def).collect();
        assert_eq!(validate(&ok), Ok(()));
        let mut dup = ok.clone();
        dup.push(def("pitch", None));
        assert_eq!(
            validate(&dup),
            Err(PlanError::DuplicateName("pitch".into()))
        );
        let orphan = vec![def("a", Some("nowhere"))];
        assert!(matches!(
            validate(&orphan),
            Err(PlanError::UnknownUpstream { .. })
        ));
        let cycle = vec![def("a", Some("b")), def("b", Some("a")), def("c", None)];
        assert!(matches!(validate(&cycle), Err(PlanError::Cycle(_))));
        let self_loop = vec![def("a", Some("a"))];
        assert!(matches!(validate(&self_loop), Err(PlanError::Cycle(_))));
    }
}
