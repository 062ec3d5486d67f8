//! Fault rules: what a rule matches, what it does, and whether it fires this time.
//!
//! The shape follows LocalStack's chaos API (a list of rules, each matching requests and saying
//! what to do to them, with a probability), extended with what a task engine needs: failing a
//! step or stretching its duration, a count after which a rule retires (`times`), and a seed so
//! that a run of probabilistic faults is the same run twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Rules one server holds at most.
pub const MAX_RULES: usize = 100;
/// Longest matcher value (an operation id, a task or step name, an id).
pub const MAX_NAME: usize = 128;
/// Longest injected failure reason or error message.
pub const MAX_TEXT: usize = 1024;
/// Longest injected delay of an API answer.
pub const MAX_LATENCY_MS: u64 = 60_000;
/// Longest duration a step may be given.
pub const MAX_STEP_MS: u64 = 7 * 24 * 3_600_000;
/// Largest factor a step's planned duration may be multiplied by.
pub const MAX_FACTOR: f64 = 1_000.0;
/// Largest `times`.
pub const MAX_TIMES: u64 = 1_000_000_000;

pub use crate::wire::control::{ErrorInput, FailInput, RuleInput};
use crate::wire::control::{InjectedError, RuleJson};

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// Answer the API call with an error, after a delay.
    Error { status_code: u16, error_code: String, error_msg: String, retry_after: Option<u64>, latency_ms: u64 },
    /// Delay the API answer, then answer as usual.
    Latency { latency_ms: u64 },
    /// Fail the step with this reason.
    FailStep { reason: String },
    /// The step takes this long.
    StepDuration { ms: u64 },
    /// The step takes this many times its planned duration.
    StepFactor { factor: f64 },
}

impl Effect {
    /// The metric label: one of a fixed set.
    pub fn label(&self) -> &'static str {
        match self {
            Effect::Error { .. } => "error",
            Effect::Latency { .. } => "latency",
            Effect::FailStep { .. } => "fail_step",
            Effect::StepDuration { .. } | Effect::StepFactor { .. } => "step_duration",
        }
    }

    pub fn on_api(&self) -> bool {
        matches!(self, Effect::Error { .. } | Effect::Latency { .. })
    }
}

/// A stored rule: its matchers, effect, dice and what it has done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: u64,
    pub operation: Option<String>,
    pub project_id: Option<String>,
    pub instance_id: Option<String>,
    pub task_name: Option<String>,
    pub step: Option<String>,
    pub probability: f64,
    pub times: Option<u64>,
    pub seed: u64,
    pub effect: Effect,
    /// How often it fired.
    pub fired: u64,
    /// How often it was asked (matched and, with a probability under 1, rolled).
    pub matched: u64,
    /// Its random sequence's position.
    rng: u64,
}

/// Where a rule may hit: an API call or a task's step.
#[derive(Debug, Clone, Copy)]
pub enum Site<'a> {
    Api { operation: &'a str, project_id: &'a str, instance_id: Option<&'a str> },
    Step { project_id: &'a str, instance_id: &'a str, task_name: &'a str, step: &'a str },
}

fn same(want: &Option<String>, got: Option<&str>) -> bool {
    want.as_deref().is_none_or(|w| Some(w) == got)
}

impl Rule {
    fn matches(&self, site: Site<'_>) -> bool {
        match site {
            Site::Api { operation, project_id, instance_id } => {
                self.effect.on_api()
                    && same(&self.operation, Some(operation))
                    && same(&self.project_id, Some(project_id))
                    && same(&self.instance_id, instance_id)
            }
            Site::Step { project_id, instance_id, task_name, step } => {
                !self.effect.on_api()
                    && same(&self.project_id, Some(project_id))
                    && same(&self.instance_id, Some(instance_id))
                    && same(&self.task_name, Some(task_name))
                    && same(&self.step, Some(step))
            }
        }
    }

    pub fn retired(&self) -> bool {
        self.times.is_some_and(|t| self.fired >= t)
    }

    /// The next number of the rule's sequence (splitmix64: tiny, and the same everywhere).
    fn roll(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether the rule fires at `site` now; counts the firing.
    fn fire(&mut self, site: Site<'_>) -> bool {
        if self.retired() || !self.matches(site) {
            return false;
        }
        self.matched += 1;
        if self.probability < 1.0 && self.roll() >= self.probability {
            return false;
        }
        self.fired += 1;
        true
    }

    /// The rule as the API shows it.
    pub fn shown(&self) -> RuleJson {
        let mut shown = RuleJson {
            error: None,
            fail_step: None,
            fired: self.fired,
            id: self.id,
            instance_id: self.instance_id.clone(),
            latency_ms: None,
            matched: self.matched,
            operation: self.operation.clone(),
            probability: self.probability,
            project_id: self.project_id.clone(),
            retired: self.retired(),
            seed: self.seed,
            step: self.step.clone(),
            step_duration_factor: None,
            step_duration_ms: None,
            task_name: self.task_name.clone(),
            times: self.times,
        };
        match &self.effect {
            Effect::Error { status_code, error_code, error_msg, retry_after, latency_ms } => {
                shown.error = Some(InjectedError {
                    error_code: error_code.clone(),
                    error_msg: error_msg.clone(),
                    retry_after: *retry_after,
                    status_code: *status_code,
                });
                shown.latency_ms = (*latency_ms > 0).then_some(*latency_ms);
            }
            Effect::Latency { latency_ms } => shown.latency_ms = Some(*latency_ms),
            Effect::FailStep { reason } => shown.fail_step = Some(FailInput { reason: reason.clone() }),
            Effect::StepDuration { ms } => shown.step_duration_ms = Some(*ms),
            Effect::StepFactor { factor } => shown.step_duration_factor = Some(*factor),
        }
        shown
    }
}

/// Why a rule was refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRule(pub String);

fn name(field: &str, v: &Option<String>) -> Result<Option<String>, BadRule> {
    match v {
        Some(s) if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) => {
            Err(BadRule(format!("{field} must be 1 to {MAX_NAME} bytes without control characters")))
        }
        other => Ok(other.clone()),
    }
}

fn text(field: &str, s: &str) -> Result<String, BadRule> {
    if s.is_empty() || s.len() > MAX_TEXT || s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(BadRule(format!("{field} must be 1 to {MAX_TEXT} bytes without control characters")));
    }
    Ok(s.to_owned())
}

/// The service's own code and message for the statuses testers inject most.
fn known_error(status: u16) -> Option<(&'static str, &'static str)> {
    Some(match status {
        429 => ("APIGW.0308", "The throttling threshold has been reached."),
        403 => ("DMS.00403003", "This role does not have the permissions to perform this operation."),
        500 => ("DMS.00500000", "Internal service error."),
        503 => ("DMS.00503001", "The server is busy. Try again later."),
        _ => return None,
    })
}

impl Rule {
    /// The rule `input` describes, with id `id`; refused with the reason when it is not one.
    pub fn of(input: RuleInput, id: u64) -> Result<Rule, BadRule> {
        let latency = match input.latency_ms {
            Some(ms) if ms > MAX_LATENCY_MS => {
                return Err(BadRule(format!("latency_ms must be at most {MAX_LATENCY_MS}")));
            }
            other => other,
        };
        let mut effects = Vec::new();
        if let Some(e) = &input.error {
            if !(400..=599).contains(&e.status_code) {
                return Err(BadRule("error.status_code must be between 400 and 599".into()));
            }
            let known = known_error(e.status_code);
            let code = match (&e.error_code, known) {
                (Some(c), _) => {
                    if c.is_empty()
                        || c.len() > 64
                        || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '_')
                    {
                        return Err(BadRule(
                            "error.error_code must be 1 to 64 letters, digits, dots or underscores".into(),
                        ));
                    }
                    c.clone()
                }
                (None, Some((c, _))) => c.to_owned(),
                (None, None) => return Err(BadRule("error.error_code is needed for this status_code".into())),
            };
            let msg = match (&e.error_msg, known) {
                (Some(m), _) => text("error.error_msg", m)?,
                (None, Some((_, m))) => m.to_owned(),
                (None, None) => "Injected fault.".to_owned(),
            };
            let retry_after = match e.retry_after {
                Some(s) if s > 86_400 => return Err(BadRule("error.retry_after must be at most 86400".into())),
                Some(s) => Some(s),
                None if matches!(e.status_code, 429 | 503) => Some(1),
                None => None,
            };
            effects.push(Effect::Error {
                status_code: e.status_code,
                error_code: code,
                error_msg: msg,
                retry_after,
                latency_ms: latency.unwrap_or(0),
            });
        } else if let Some(ms) = latency {
            effects.push(Effect::Latency { latency_ms: ms });
        }
        if let Some(f) = &input.fail_step {
            effects.push(Effect::FailStep { reason: text("fail_step.reason", &f.reason)? });
        }
        if let Some(ms) = input.step_duration_ms {
            if ms > MAX_STEP_MS {
                return Err(BadRule(format!("step_duration_ms must be at most {MAX_STEP_MS}")));
            }
            effects.push(Effect::StepDuration { ms });
        }
        if let Some(f) = input.step_duration_factor {
            if !f.is_finite() || !(0.0..=MAX_FACTOR).contains(&f) {
                return Err(BadRule(format!("step_duration_factor must be between 0 and {MAX_FACTOR}")));
            }
            effects.push(Effect::StepFactor { factor: f });
        }
        let effect = match effects.len() {
            1 => effects.remove(0),
            0 => {
                return Err(BadRule(
                    "a rule needs an effect: error, latency_ms, fail_step, step_duration_ms or step_duration_factor"
                        .into(),
                ));
            }
            _ => return Err(BadRule("a rule has exactly one effect (error may come with latency_ms)".into())),
        };
        if effect.on_api() && (input.task_name.is_some() || input.step.is_some()) {
            return Err(BadRule(
                "task_name and step match steps; an API effect matches operation, project_id, instance_id".into(),
            ));
        }
        if !effect.on_api() && input.operation.is_some() {
            return Err(BadRule(
                "operation matches API calls; a step effect matches project_id, instance_id, task_name, step".into(),
            ));
        }
        let probability = input.probability.unwrap_or(1.0);
        if !probability.is_finite() || !(0.0..=1.0).contains(&probability) {
            return Err(BadRule("probability must be between 0 and 1".into()));
        }
        if input.times.is_some_and(|t| t == 0 || t > MAX_TIMES) {
            return Err(BadRule(format!("times must be between 1 and {MAX_TIMES}")));
        }
        let seed = input.seed.unwrap_or(0);
        Ok(Rule {
            id,
            operation: name("operation", &input.operation)?,
            project_id: name("project_id", &input.project_id)?,
            instance_id: name("instance_id", &input.instance_id)?,
            task_name: name("task_name", &input.task_name)?,
            step: name("step", &input.step)?,
            probability,
            times: input.times,
            seed,
            effect,
            fired: 0,
            matched: 0,
            rng: seed,
        })
    }
}

/// Parses a body's rules: `{"rules": [...]}` or one rule object (for PATCH) is the caller's
/// concern; this takes the list.
pub fn parse_rules(list: &[Value], first_id: u64) -> Result<Vec<Rule>, BadRule> {
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let input: RuleInput =
                serde_json::from_value(v.clone()).map_err(|e| BadRule(format!("rules[{i}]: {e}")))?;
            Rule::of(input, first_id + i as u64).map_err(|BadRule(why)| BadRule(format!("rules[{i}]: {why}")))
        })
        .collect()
}

/// Every rule of a server, and the id the next one gets. Stored whole (see [`super`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSet {
    pub rules: Vec<Rule>,
    pub next_id: u64,
    /// Moves with every change of the list, so that other processes see when to reload it.
    pub revision: u64,
}

/// What a firing rule does, handed to where it fired.
#[derive(Debug, Clone)]
pub struct Fired {
    pub rule: u64,
    pub effect: Effect,
}

impl FaultSet {
    /// The first rule that fires at `site`, in list order. Every matching rule before it that
    /// rolled and missed counts its roll, so a seeded run is reproducible as a whole.
    pub fn fire(&mut self, site: Site<'_>) -> Option<Fired> {
        self.rules.iter_mut().find_map(|r| r.fire(site).then(|| Fired { rule: r.id, effect: r.effect.clone() }))
    }

    /// Whether any rule could fire at an API call: the gateway skips the look-up otherwise.
    pub fn has_live(&self, api: bool) -> bool {
        self.rules.iter().any(|r| !r.retired() && r.effect.on_api() == api)
    }

    /// Removes the rules matching `filter` (every field given must be equal; `{}` removes all).
    /// How many went.
    pub fn remove_matching(&mut self, filter: &serde_json::Map<String, Value>) -> usize {
        let before = self.rules.len();
        self.rules.retain(|r| {
            let shown = serde_json::to_value(r.shown()).unwrap_or_default();
            !filter.iter().all(|(k, v)| shown.get(k) == Some(v))
        });
        before - self.rules.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> Result<Rule, BadRule> {
        Rule::of(serde_json::from_value::<RuleInput>(v).map_err(|e| BadRule(e.to_string()))?, 1)
    }

    const LIST: Site<'static> = Site::Api { operation: "ListInstances", project_id: "p", instance_id: None };

    #[test]
    fn the_same_seed_gives_the_same_faults() {
        let run = |seed: u64| {
            let mut set = FaultSet {
                rules: vec![rule(json!({"latency_ms": 1, "probability": 0.5, "seed": seed})).expect("valid")],
                ..FaultSet::default()
            };
            (0..64).map(|_| set.fire(LIST).is_some()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).iter().filter(|h| **h).count();
        assert!((16..48).contains(&hits), "about half: {hits}");
    }

    #[test]
    fn a_rule_retires_after_its_times() {
        let mut set =
            FaultSet { rules: vec![rule(json!({"latency_ms": 1, "times": 2})).expect("valid")], ..FaultSet::default() };
        let fired: Vec<bool> = (0..4).map(|_| set.fire(LIST).is_some()).collect();
        assert_eq!(fired, [true, true, false, false]);
        assert!(set.rules[0].retired());
        assert!(!set.has_live(true));
    }

    #[test]
    fn matchers_and_effects_must_agree() {
        assert!(rule(json!({"fail_step": {"reason": "x"}, "operation": "ListInstances"})).is_err());
        assert!(rule(json!({"latency_ms": 5, "step": "X"})).is_err());
        assert!(rule(json!({})).is_err());
        assert!(rule(json!({"latency_ms": 5, "fail_step": {"reason": "x"}})).is_err());
        assert!(rule(json!({"error": {"status_code": 418}})).is_err(), "no code for an unknown status");
        assert!(rule(json!({"error": {"status_code": 200, "error_code": "X"}})).is_err());
        assert!(rule(json!({"latency_ms": 5, "probability": 1.5})).is_err());
        assert!(rule(json!({"latency_ms": 5, "times": 0})).is_err());
        assert!(rule(json!({"latency_ms": 5, "nonsense": 1})).is_err());
        assert!(rule(json!({"latency_ms": 5, "operation": "x".repeat(MAX_NAME + 1)})).is_err());
        let r = rule(json!({"error": {"status_code": 429}})).expect("valid");
        assert_eq!(
            r.effect,
            Effect::Error {
                status_code: 429,
                error_code: "APIGW.0308".into(),
                error_msg: "The throttling threshold has been reached.".into(),
                retry_after: Some(1),
                latency_ms: 0
            }
        );
    }

    #[test]
    fn a_step_rule_matches_its_task_and_step_only() {
        let mut set = FaultSet {
            rules: vec![
                rule(json!({"fail_step": {"reason": "disk"}, "task_name": "restart", "step": "B"})).expect("valid"),
            ],
            ..FaultSet::default()
        };
        let at = |task_name, step| Site::Step { project_id: "p", instance_id: "i", task_name, step };
        assert!(set.fire(LIST).is_none());
        assert!(set.fire(at("restart", "A")).is_none());
        assert!(set.fire(at("modifyConfigs", "B")).is_none());
        assert!(set.fire(at("restart", "B")).is_some());
    }
}
