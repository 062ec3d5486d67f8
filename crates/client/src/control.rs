//! `kafka-tasks control …`: test control of a server started with `serve --test-control`
//! (fault rules, the clock, the reset, snapshots; admin role). See docs/testing.md.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use kafka_tasks_wire::control::{ClockAnswer, ResetAnswer, RestoredSnapshot, RulesAnswer, SnapshotJson, SnapshotList};

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
    /// Named snapshots of the state (instances, tasks, scheduled tasks, runs, events, retention
    /// policies; never credentials): save, list, restore, delete.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the state as NAME (replacing a snapshot of that name).
    Save { name: String },
    /// The snapshots, with when each was saved and its size.
    List,
    /// The state becomes the snapshot's (fault rules and the clock stay as they are).
    Restore { name: String },
    /// Remove a snapshot.
    Delete { name: String },
}

/// A snapshot name as the server takes it; checked here too, since it goes into the path.
fn snapshot_name(name: &str) -> Result<&str, Failure> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(name)
    } else {
        Err(Failure::Usage("a snapshot NAME has 1 to 64 letters, digits, '.', '-' or '_'".into()))
    }
}

fn render_snapshots(list: &SnapshotList) -> String {
    if list.snapshots.is_empty() {
        return "no snapshots".into();
    }
    let rows = list
        .snapshots
        .iter()
        .map(|s| {
            vec![
                output::Cell::from(s.name.as_str()),
                output::Cell::from(s.created_at.as_str()),
                output::Cell::from(format!("{:.1} KiB", s.size_bytes as f64 / 1024.0)),
            ]
        })
        .collect();
    let mut out = output::table(&["NAME", "SAVED", "SIZE"], rows, false);
    out.pop();
    out
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

fn render_rules(answer: &RulesAnswer) -> String {
    if answer.rules.is_empty() {
        return "no fault rules".into();
    }
    answer
        .rules
        .iter()
        .map(|r| {
            // The matchers and the effect, as the server shows them.
            let mut shown = serde_json::to_value(r).unwrap_or_default();
            if let Some(m) = shown.as_object_mut() {
                for k in ["id", "fired", "matched", "retired"] {
                    m.remove(k);
                }
            }
            let state = if r.retired { " (retired)" } else { "" };
            format!("#{} fired {}/{}{state}  {}", r.id, r.fired, r.matched, shown)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_clock(clock: &ClockAnswer) -> String {
    let mut out = fields(&[
        ("now", clock.now.clone()),
        ("offset", output::duration(clock.offset_ms.unsigned_abs() / 1000)),
        ("frozen", clock.frozen.to_string()),
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
            c.show_as(&v, render_rules);
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
            c.show_as(&v, render_clock);
        }
        ControlCommand::Reset { credentials } => {
            let v =
                c.api.send("POST", &format!("{base}/reset"), &[], Some(&json!({ "credentials": credentials }))).await?;
            c.show_as(&v, |r: &ResetAnswer| format!("database reset in {:.1} ms", r.took_ms));
        }
        ControlCommand::Snapshot(s) => {
            let path = format!("{base}/snapshots");
            match s {
                SnapshotCommand::Save { name } => {
                    let v = c.api.send("POST", &path, &[], Some(&json!({ "name": snapshot_name(&name)? }))).await?;
                    c.show_as(&v, |s: &SnapshotJson| {
                        format!("saved snapshot {} ({:.1} KiB)", s.name, s.size_bytes as f64 / 1024.0)
                    });
                }
                SnapshotCommand::List => c.show_as(&c.api.get(&path, &[]).await?, render_snapshots),
                SnapshotCommand::Restore { name } => {
                    let at = format!("{path}/{}/restore", snapshot_name(&name)?);
                    let v = c.api.send("POST", &at, &[], None).await?;
                    c.show_as(&v, |r: &RestoredSnapshot| {
                        format!("restored snapshot {} in {:.1} ms", r.restored, r.took_ms)
                    });
                }
                SnapshotCommand::Delete { name } => {
                    c.api.send("DELETE", &format!("{path}/{}", snapshot_name(&name)?), &[], None).await?;
                    c.say(&format!("deleted snapshot {name}"));
                }
            }
        }
    }
    Ok(())
}
