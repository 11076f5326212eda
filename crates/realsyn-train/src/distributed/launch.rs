//! Which rank this process is, read from the launcher that started it.
//!
//! realsyn starts no processes itself: one process per device is started by a
//! launcher users already have, and each finds its place from the environment the
//! launcher sets:
//!
//! - **torchrun** (or any launcher that mimics it, e.g. `torchrun --no-python`):
//!   `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`;
//! - **Slurm** `srun`: `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS` (else
//!   `SLURM_NTASKS`), `SLURM_LOCALID`, and the node list (`SLURM_STEP_NODELIST` or
//!   `SLURM_JOB_NODELIST`), whose first host is the rendezvous unless `MASTER_ADDR`
//!   says otherwise. The port is `MASTER_PORT`, else one derived from `SLURM_JOB_ID`
//!   (so two jobs on one node do not collide), as open_clip's and Lightning's Slurm
//!   paths do. Only inside a job step (`SLURM_STEP_ID` set, i.e. under srun): an
//!   sbatch script itself also has `SLURM_PROCID=0` and `SLURM_NTASKS=N`, and a
//!   `realsyn train` run there directly is one process, not rank 0 of N.
//!
//! torchrun's variables win when both are set (a torchrun inside an allocation).

use std::collections::HashMap;

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// No launcher: one process, world of one.
    Single,
    Torchrun,
    Slurm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    pub launcher: Launcher,
    pub rank: usize,
    pub world: usize,
    /// Rank on this node: picks the GPU (`cuda` becomes `cuda:LOCAL_RANK`).
    pub local_rank: usize,
    /// Where rank 0 listens for the others (unused for a world of one).
    pub master_addr: String,
    pub master_port: u16,
}

impl LaunchEnv {
    pub fn single() -> Self {
        Self {
            launcher: Launcher::Single,
            rank: 0,
            world: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: 0,
        }
    }

    /// This process's place, from the real environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self> {
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let num = |k: &str| -> Result<Option<usize>> {
            get(k)
                .map(|v| {
                    v.parse::<usize>()
                        .with_context(|| format!("{k}={v} is not a non-negative integer"))
                })
                .transpose()
        };
        let port = |default: Option<u16>| -> Result<u16> {
            match get("MASTER_PORT") {
                Some(p) => p
                    .parse()
                    .with_context(|| format!("MASTER_PORT={p} is not a port number")),
                None => default.context(
                    "MASTER_PORT is not set: set it to a free TCP port that every rank can reach on MASTER_ADDR",
                ),
            }
        };
        let env = if let Some(world) = num("WORLD_SIZE")? {
            let rank = num("RANK")?.context("WORLD_SIZE is set but RANK is not")?;
            let local_rank = num("LOCAL_RANK")?.unwrap_or(0);
            let master_addr = get("MASTER_ADDR").unwrap_or("127.0.0.1").to_string();
            let master_port = if world > 1 { port(None)? } else { 0 };
            Self {
                launcher: Launcher::Torchrun,
                rank,
                world,
                local_rank,
                master_addr,
                master_port,
            }
        } else if let (Some(world), Some(_)) = (
            num("SLURM_STEP_NUM_TASKS")?.or(num("SLURM_NTASKS")?),
            get("SLURM_STEP_ID"),
        ) {
            let rank = num("SLURM_PROCID")?
                .context("a Slurm job step (SLURM_STEP_ID) without SLURM_PROCID")?;
            let local_rank = num("SLURM_LOCALID")?.unwrap_or(0);
            let master_addr = match get("MASTER_ADDR") {
                Some(a) => a.to_string(),
                None => {
                    let list = get("SLURM_STEP_NODELIST")
                        .or_else(|| get("SLURM_JOB_NODELIST"))
                        .context("under Slurm without MASTER_ADDR, SLURM_JOB_NODELIST names the rendezvous host, and it is not set")?;
                    first_host(list)?
                }
            };
            let from_job = num("SLURM_JOB_ID")?.map(|id| 20_000 + (id % 20_000) as u16);
            let master_port = if world > 1 { port(from_job)? } else { 0 };
            Self {
                launcher: Launcher::Slurm,
                rank,
                world,
                local_rank,
                master_addr,
                master_port,
            }
        } else {
            Self::single()
        };
        if env.world == 0 || env.rank >= env.world {
            bail!(
                "rank {} does not fit a world of {} ({:?} environment)",
                env.rank,
                env.world,
                env.launcher
            );
        }
        Ok(env)
    }

    /// The device spec this rank trains on: a bare `cuda` becomes `cuda:LOCAL_RANK`
    /// in a world of several; anything explicit is kept.
    pub fn device_for_rank(&self, spec: &str) -> String {
        if self.world > 1 && spec.trim() == "cuda" {
            format!("cuda:{}", self.local_rank)
        } else {
            spec.to_string()
        }
    }
}

/// The first host of a Slurm node list: `gpu[03-05,09],cpu1` -> `gpu03`.
pub fn first_host(list: &str) -> Result<String> {
    let first = split_top_level(list)
        .into_iter()
        .next()
        .filter(|s| !s.is_empty())
        .with_context(|| format!("empty Slurm node list {list:?}"))?;
    let Some(open) = first.find('[') else {
        return Ok(first.to_string());
    };
    let close = first[open..]
        .find(']')
        .map(|i| open + i)
        .with_context(|| format!("unbalanced brackets in Slurm node list {list:?}"))?;
    let prefix = &first[..open];
    let range = first[open + 1..close].split(',').next().unwrap_or_default();
    let lo = range.split('-').next().unwrap_or_default();
    if lo.is_empty() || !lo.bytes().all(|b| b.is_ascii_digit()) {
        bail!("cannot read the Slurm node list {list:?}");
    }
    // Zero padding is part of the host name (`gpu[03-05]` -> `gpu03`).
    Ok(format!("{prefix}{lo}{}", &first[close + 1..]))
}

/// Split at commas outside brackets.
fn split_top_level(list: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim());
    out
}

/// A port for rank 0's rendezvous (MASTER_PORT) on this host that nothing else is
/// handed meanwhile, for tests that start their own ranks: below the kernel's
/// ephemeral range (32768-60999 by default), where the ranks' own listeners and
/// connections (`bind(0)`) never land, so a port found free stays free until rank 0
/// binds it. Asking the OS for a free ephemeral port and closing it raced with the
/// tests beside it: another test's ring listener was handed the same port in between
/// (seen in CI as "rank 0 cannot listen on MASTER_PORT"). Each process takes its own
/// window of 20 (by pid), in turn.
pub fn local_rendezvous_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let window = 20_000 + (std::process::id() % 600) as u16 * 20;
    (0..20)
        .map(|_| window + NEXT.fetch_add(1, Ordering::Relaxed) % 20)
        .find(|&port| std::net::TcpListener::bind(("0.0.0.0", port)).is_ok())
        .with_context(|| format!("no free port in {window}..{}", window + 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn slurm_node_lists() {
        assert_eq!(first_host("node1").unwrap(), "node1");
        assert_eq!(first_host("gpu[03-05,09],cpu1").unwrap(), "gpu03");
        assert_eq!(first_host("a[7],b[1-2]").unwrap(), "a7");
        assert_eq!(first_host("rack[2-3]-gpu").unwrap(), "rack2-gpu");
        assert!(first_host("gpu[x-y]").is_err());
        assert!(first_host("gpu[01").is_err());
    }

    #[test]
    fn torchrun_slurm_and_none() {
        assert_eq!(
            LaunchEnv::from_vars(&vars(&[])).unwrap(),
            LaunchEnv::single()
        );
        let t = LaunchEnv::from_vars(&vars(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29500"),
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
        ]))
        .unwrap();
        assert_eq!(t.launcher, Launcher::Torchrun);
        assert_eq!((t.rank, t.world, t.local_rank), (3, 4, 1));
        assert_eq!((t.master_addr.as_str(), t.master_port), ("10.0.0.1", 29500));
        assert_eq!(t.device_for_rank("cuda"), "cuda:1");
        assert_eq!(t.device_for_rank("cpu"), "cpu");

        // An sbatch script's own environment (no job step): one process.
        let batch = [
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "16"),
            ("SLURM_JOB_ID", "7"),
        ];
        assert_eq!(
            LaunchEnv::from_vars(&vars(&batch)).unwrap(),
            LaunchEnv::single()
        );
        let s = LaunchEnv::from_vars(&vars(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_STEP_NUM_TASKS", "16"),
            ("SLURM_PROCID", "9"),
            ("SLURM_NTASKS", "32"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[12-13]"),
            ("SLURM_JOB_ID", "123456"),
        ]))
        .unwrap();
        assert_eq!(s.launcher, Launcher::Slurm);
        assert_eq!((s.rank, s.world, s.local_rank), (9, 16, 1));
        assert_eq!(s.master_addr, "gpu12");
        assert_eq!(s.master_port, 20_000 + (123_456 % 20_000) as u16);
    }

    #[test]
    fn bad_environments_say_what_is_wrong() {
        let e = LaunchEnv::from_vars(&vars(&[("WORLD_SIZE", "2"), ("RANK", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MASTER_PORT"), "{e}");
        let e = LaunchEnv::from_vars(&vars(&[
            ("WORLD_SIZE", "2"),
            ("RANK", "2"),
            ("MASTER_PORT", "1"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("rank 2 does not fit a world of 2"), "{e}");
        let e = LaunchEnv::from_vars(&vars(&[("WORLD_SIZE", "two")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("WORLD_SIZE=two"), "{e}");
    }
}
