//! Kernel builds: the patch builds of each engine version's Kafka. An instance runs one build
//! of its engine version; a kernel upgrade moves it to the newest build, never to another
//! engine version.
//!
//! Each engine version has an ordered list of builds, oldest first: the built-in ones below,
//! then the ones the operator added (`kafka-tasks kernels add`), in the order they were added.
//! The last one is the latest. Builds are never removed, so a build that was newer than an
//! instance's stays newer.

/// The builds every database starts with, oldest first, per engine version. The names follow
/// DMS's (`2.7.1-h0.cbu.dms.101.r0` in its API reference).
pub const BUILT_IN: &[(&str, &[&str])] = &[
    ("2.7", &["2.7.1-h0.cbu.dms.100.r0", "2.7.1-h0.cbu.dms.101.r0"]),
    ("3.x", &["3.1.1-h0.cbu.dms.100.r0", "3.1.1-h0.cbu.dms.101.r0"]),
];

/// The longest build name accepted.
pub const MAX_BUILD_LEN: usize = 64;

fn built_in(engine_version: &str) -> Option<&'static [&'static str]> {
    BUILT_IN.iter().find(|(v, _)| *v == engine_version).map(|(_, b)| *b)
}

/// The first build of an engine version: what an instance stored before kernels were recorded
/// is taken to run.
pub fn initial(engine_version: &str) -> Option<&'static str> {
    built_in(engine_version).and_then(|b| b.first().copied())
}

/// The builds of one engine version, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    builds: Vec<String>,
}

impl Catalog {
    /// The built-in builds of `engine_version` followed by the ones `added` (in the order they
    /// were added). `None` for an unknown engine version.
    pub fn new(engine_version: &str, added: Vec<String>) -> Option<Self> {
        let mut builds: Vec<String> = built_in(engine_version)?.iter().map(|b| (*b).to_owned()).collect();
        for b in added {
            if !builds.contains(&b) {
                builds.push(b);
            }
        }
        Some(Catalog { builds })
    }

    /// The newest build.
    pub fn latest(&self) -> &str {
        self.builds.last().map_or("", String::as_str)
    }

    pub fn builds(&self) -> &[String] {
        &self.builds
    }

    /// Whether `build` may be added: a well-formed name not listed yet. `Err` says why not.
    pub fn check_new(&self, build: &str) -> Result<(), String> {
        let well_formed = !build.is_empty()
            && build.len() <= MAX_BUILD_LEN
            && build.starts_with(|c: char| c.is_ascii_alphanumeric())
            && build.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !well_formed {
            return Err(format!(
                "a build name has 1 to {MAX_BUILD_LEN} letters, digits, '.', '-' or '_', and starts with a letter or digit"
            ));
        }
        if self.builds.iter().any(|b| b == build) {
            return Err(format!("{build} is already a build of this engine version"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_builds_come_after_the_built_in_ones() {
        let c = Catalog::new("2.7", vec!["2.7.1-h0.cbu.dms.102.r0".into()]).expect("known");
        assert_eq!(c.latest(), "2.7.1-h0.cbu.dms.102.r0");
        assert_eq!(c.builds().first().map(String::as_str), initial("2.7"));
        assert_eq!(Catalog::new("2.7", vec![]).expect("known").latest(), "2.7.1-h0.cbu.dms.101.r0");
        assert!(Catalog::new("9.9", vec![]).is_none());
    }

    #[test]
    fn a_new_build_is_well_formed_and_new() {
        let c = Catalog::new("3.x", vec![]).expect("known");
        assert!(c.check_new("3.1.1-h0.cbu.dms.102.r0").is_ok());
        assert!(c.check_new("3.1.1-h0.cbu.dms.101.r0").is_err());
        assert!(c.check_new("").is_err());
        assert!(c.check_new("-x").is_err());
        assert!(c.check_new("a b").is_err());
        assert!(c.check_new(&"9".repeat(65)).is_err());
    }
}
