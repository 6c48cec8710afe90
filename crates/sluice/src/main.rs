//! The `sluice` binary: the gateway (`sluice run`) and the administrator's CLI verbs.
//! Exit status: 0 success, 1 runtime failure or a negative answer (invalid config, policy test
//! mismatch), 64 (`EX_USAGE`) bad flags or an unusable configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin_tls;
mod cli;
mod load;
mod pinning;
mod policy_test;
mod run;
mod whatif;

// jemalloc returns freed memory to the system over time; glibc's allocator kept ~500 MiB after
// 10,000 tunnels closed (BENCHMARKS.md, RL-01), so a gateway's footprint tracked its peak.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// sluice: a secure web gateway that decrypts what it should, and leaves pinned apps alone.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
pub(crate) struct Args {
    /// Configuration file (TOML). Without it, the embedded defaults apply.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (CA, event store). Default: $SLUICE_DATA_DIR, else $XDG_DATA_HOME/sluice
    /// or ~/.local/share/sluice.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the gateway.
    Run,
    /// Explain the decision for a host.
    Check {
        /// Host (CONNECT host or request host).
        host: String,
        /// Client address.
        #[arg(long, default_value = "127.0.0.1")]
        client: std::net::IpAddr,
        /// Proxy user.
        #[arg(long)]
        user: Option<String>,
        /// SNI, when it differs from HOST.
        #[arg(long)]
        sni: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// CA certificate operations.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The application catalog.
    Apps {
        #[command(subcommand)]
        command: AppsCommand,
    },
    /// Certificate-pinning suspects, learned bypasses and approvals.
    Pinning {
        #[command(subcommand)]
        command: PinningCommand,
    },
    /// Which recorded flows a configuration would decide differently (run with
    /// `--config NEW.toml`).
    WhatIf {
        /// An access log (JSON lines) recorded by the gateway.
        #[arg(long, value_name = "ACCESS.log")]
        log: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Policy as code.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
pub(crate) enum CaCommand {
    /// Print the certificate clients must trust (PEM, or DER with --der): the CA, or the root
    /// at the end of a `[ca] cert` chain file.
    Export {
        /// DER instead of PEM.
        #[arg(long)]
        der: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum AppsCommand {
    /// List catalog applications (the seed's Table 1).
    List {
        /// JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one application's domains and sources.
    Show {
        /// Application id.
        id: String,
        /// JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum PinningCommand {
    /// Suspects, learned bypasses, approvals and rejections.
    List {
        /// JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Approve a permanent exception for a host, with the evidence attached.
    Approve {
        /// The host.
        host: String,
        /// `fingerprint` (only the pinning client) or `host` (every client).
        #[arg(long, default_value = "fingerprint")]
        scope: String,
        /// The fingerprint to approve when the host has several.
        #[arg(long)]
        ja4: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reject a host: never learned again until cleared.
    Reject {
        /// The host.
        host: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Suspects as catalog `[[app]]` TOML for review.
    Export,
}

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Check expected decisions (`[[case]] host, client?, user?, sni?, expect`); exit 1 on any
    /// mismatch.
    Test {
        /// The cases file.
        cases: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration file and print every error with its key and line.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// A failure with its exit status.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 64,
            message: message.into(),
        }
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::runtime(format!("{e:#}"))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Command::Run => run::run(&args),
        Command::Check {
            host,
            client,
            user,
            sni,
            json,
        } => cli::check(&args, host, *client, user.as_deref(), sni.as_deref(), *json),
        Command::Ca {
            command: CaCommand::Export { der },
        } => cli::ca_export(&args, *der),
        Command::Apps {
            command: AppsCommand::List { json },
        } => cli::apps_list(&args, *json),
        Command::Apps {
            command: AppsCommand::Show { id, json },
        } => cli::apps_show(&args, id, *json),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => cli::config_check(&args, file),
        Command::Policy {
            command: PolicyCommand::Test { cases },
        } => policy_test::run(&args, cases),
        Command::WhatIf { log, json } => whatif::run(&args, log, *json),
        Command::Pinning { command } => match command {
            PinningCommand::List { json } => pinning::list(&args, *json),
            PinningCommand::Approve {
                host,
                scope,
                ja4,
                note,
            } => pinning::approve(&args, host, scope, ja4.as_deref(), note),
            PinningCommand::Reject { host, note } => pinning::reject(&args, host, note),
            PinningCommand::Export => pinning::export(&args),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("sluice: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
