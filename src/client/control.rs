//! `kafka-tasks control …`: test control of a server started with `serve --test-control`
//! (fault rules, the clock, the reset; admin role). See docs/notes/control.md.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::output::{self, fields};
use super::{Conn, Ctx, Failure};

#[derive(Debug, Args)]
pub struct ControlArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: ControlCommand,
}

#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// Fault rules: list, replace, add, remove.
    #[command(subcommand)]
    Faults(FaultsCommand),
    /// The server's clock: show, advance, set, freeze, resume (never backwards).
    #[command(subcommand)]
    Clock(ClockCommand),
    /// Back to a clean database: every instance, task, event and audit record goes, and the
    /// fault rules; access keys stay (all but yours go with --credentials); the clock stays.
    Reset {
        #[arg(long)]
        credentials: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FaultsCommand {
    /// The rules, with how often each matched and fired.
    List,
    /// The rules become these: each RULE a JSON object, e.g.
    /// '{"operation":"ListBackgroundTasks","error":{"status_code":429},"times":2}'.
    Replace {
        #[arg(value_name = "RULE", required_unless_present = "file")]
        rules: Vec<String>,
        /// A file holding `{"rules": [...]}` instead.
        #[arg(long, conflicts_with = "rules")]
        file: Option<std::path::PathBuf>,
    },
    /// Add these rules after the others.
    Add {
        #[arg(value_name = "RULE", required_unless_present = "file")]
        rules: Vec<String>,
        #[arg(long, conflicts_with = "rules")]
        file: Option<std::path::PathBuf>,
    },
    /// Remove the rules with these ids; every rule without --id.
    Remove {
        #[arg(long)]
        id: Vec<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// What the clock reads, and its offset from the wall clock.
    Show,
    /// Move it forward: `90s`, `15m`, `2h`, `1d`, or milliseconds.
    Advance { by: String },
    /// Move it to a time (RFC 3339), not earlier than now.
    Set { to: String },
    /// Stop it where it is.
    Freeze,
    /// Let it run again from where it stands.
    Resume,
}

fn rules_body(rules: &[String], file: Option<&std::path::Path>) -> Result<Value, Failure> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
        return serde_json::from_str(&text).map_err(|e| Failure::Usage(format!("{} is not JSON: {e}", path.display())));
    }
    let list = rules
        .iter()
        .map(|r| serde_json::from_str::<Value>(r).map_err(|e| Failure::Usage(format!("a RULE is a JSON object: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "rules": list }))
}

fn render_rules(v: &Value) -> String {
    let rules = v["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        return "no fault rules".into();
    }
    rules
        .iter()
        .map(|r| {
            let mut shown = r.clone();
            for k in ["id", "fired", "matched", "retired"] {
                if let Some(m) = shown.as_object_mut() {
                    m.remove(k);
                }
            }
            let state = if r["retired"] == true { " (retired)" } else { "" };
            format!("#{} fired {}/{}{state}  {}", r["id"], r["fired"], r["matched"], shown)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_clock(v: &Value) -> String {
    let mut out = fields(&[
        ("now", v["now"].as_str().unwrap_or_default().to_owned()),
        ("offset", output::duration(v["offset_ms"].as_i64().unwrap_or(0).unsigned_abs() / 1000)),
        ("frozen", v["frozen"].to_string()),
    ]);
    out.pop();
    out
}

pub(super) async fn control(c: Ctx, cmd: ControlCommand) -> Result<(), Failure> {
    let base = format!("/v2/{}/test-control", c.api.project);
    match cmd {
        ControlCommand::Faults(f) => {
            let path = format!("{base}/faults");
            let v = match f {
                FaultsCommand::List => c.api.get(&path, &[]).await?,
                FaultsCommand::Replace { rules, file } => {
                    c.api.send("POST", &path, &[], Some(&rules_body(&rules, file.as_deref())?)).await?
                }
                FaultsCommand::Add { rules, file } => {
                    c.api.send("PATCH", &path, &[], Some(&rules_body(&rules, file.as_deref())?)).await?
                }
                FaultsCommand::Remove { id } if id.is_empty() => c.api.send("DELETE", &path, &[], None).await?,
                FaultsCommand::Remove { id } => {
                    let body = json!({ "rules": id.iter().map(|i| json!({ "id": i })).collect::<Vec<_>>() });
                    c.api.send("DELETE", &path, &[], Some(&body)).await?
                }
            };
            c.show(&v, render_rules);
        }
        ControlCommand::Clock(k) => {
            let path = format!("{base}/clock");
            let body = match k {
                ClockCommand::Show => None,
                ClockCommand::Advance { by } => Some(json!({ "action": "advance", "by": by })),
                ClockCommand::Set { to } => Some(json!({ "action": "set", "to": to })),
                ClockCommand::Freeze => Some(json!({ "action": "freeze" })),
                ClockCommand::Resume => Some(json!({ "action": "resume" })),
            };
            let v = match body {
                None => c.api.get(&path, &[]).await?,
                Some(b) => c.api.send("POST", &path, &[], Some(&b)).await?,
            };
            c.show(&v, render_clock);
        }
        ControlCommand::Reset { credentials } => {
            let v =
                c.api.send("POST", &format!("{base}/reset"), &[], Some(&json!({ "credentials": credentials }))).await?;
            c.show(&v, |v| format!("database reset in {:.1} ms", v["took_ms"].as_f64().unwrap_or(0.0)));
        }
    }
    Ok(())
}
