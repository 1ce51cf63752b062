use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use roar::{dev, services};
use roar_common::auth::Authenticator;
use roar_common::roles::Role;
use roar_common::{shutdown, telemetry, Config};

/// roar: turns songs into stems, transcripts, pitch curves, lyrics and generated music.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (also ROAR_CONFIG); `ROAR_*` variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The REST + SSE API.
    Orchestrator,
    /// A worker for one model's jobs (`probe` decodes uploads).
    Processor {
        /// probe | pitch | demucs | whisper | musicgen | gemma3n
        model: String,
    },
    /// The read-model projection.
    Projector {
        #[command(subcommand)]
        action: Option<ProjectorCmd>,
    },
    /// The pipelines' process manager: requests each step's job once its upstream is done.
    Pipeline,
    /// The webhook dispatcher: delivers signed job events to the URLs users registered.
    Webhooks,
    /// The whole system locally: broker, Postgres, storage and every service.
    Dev {
        /// Fail instead of installing the broker when it is missing, and fetch no weights.
        #[arg(long)]
        no_install: bool,
    },
    /// Create the Kafka topics (services also do it at start-up) and make every topic keep its
    /// messages as long as roar needs (`retention.ms`: the command and file topics forever).
    Topics {
        /// Only report topics whose retention is wrong (exit 1 if any), change nothing.
        #[arg(long)]
        check: bool,
    },
    /// The dead-letter topic: list the letters, or send one back to its source topic.
    Dlq {
        #[command(subcommand)]
        action: DlqCmd,
    },
    /// List the models, their variations and parameters, and whether this machine can serve
    /// them (weights under processor.models_dir).
    Models {
        /// Print the catalogue as JSON.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<ModelsCmd>,
    },
    /// Ask again for a model's jobs on the files that had them (new variation or version), so
    /// new outputs appear beside the old ones.
    Replay {
        #[arg(long)]
        model: String,
        /// Only jobs first requested at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only these files (comma-separated file ids).
        #[arg(long, value_delimiter = ',')]
        files: Vec<String>,
        /// Variation to ask for (default: each old job's).
        #[arg(long)]
        variation: Option<String>,
        /// Model version to record (default: the catalogue's for the variation).
        #[arg(long)]
        model_version: Option<String>,
    },
    /// Print the API's OpenAPI document (YAML), as schemas/openapi/orchestrator.yaml holds it:
    /// `roar openapi > schemas/openapi/orchestrator.yaml` regenerates that file.
    Openapi,
    /// Print a signed development token (HS256, auth.jwt_secret; unset: the key `roar dev` made
    /// in dev.dir).
    Token {
        #[arg(long, default_value = "dev-user")]
        sub: String,
        /// Roles to grant, e.g. --role admin.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in seconds (default auth.token_ttl_seconds).
        #[arg(long)]
        ttl: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsCmd {
    /// Download a model's official weights into processor.models_dir, converted to roar's
    /// layout (e.g. `roar models fetch demucs htdemucs_ft`, `roar models fetch musicgen small`,
    /// `roar models fetch gemma3n e2b`).
    Fetch {
        /// demucs | musicgen | gemma3n
        model: String,
        /// demucs: htdemucs | htdemucs_ft | htdemucs_6s; musicgen: small | medium | large |
        /// melody; gemma3n: e2b | e4b (gated: HF_TOKEN; gemma3-270m comes from
        /// scripts/gemma/fetch-weights.sh)
        variation: String,
        /// Where the checkpoints are: a URL root or a local directory with the same layout
        /// (default: the official one; else ROAR_DEMUCS_URL_ROOT, ROAR_MUSICGEN_URL_ROOT or
        /// ROAR_GEMMA_URL_ROOT, read by each model's downloader so one model's mirror never
        /// serves another).
        #[arg(long)]
        url_root: Option<String>,
        /// Download again even when the weights are already there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum DlqCmd {
    /// Every dead letter, newest first: id, time, consumer group, kind, re-drive, error.
    List {
        /// Print JSON (the `GET /admin/dlq` letter objects).
        #[arg(long)]
        json: bool,
    },
    /// Put a letter's message back on its source topic once the cause is fixed (a repeat
    /// sends nothing and says when it was sent).
    Redrive {
        /// The letter id from `roar dlq list` (`dlq-<topic>-<partition>-<offset>`).
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum ProjectorCmd {
    /// Apply database migrations and exit.
    Migrate,
    /// Replay every topic into fresh tables and swap them in (a running projector may stay up).
    Rebuild,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The OpenTelemetry service name of a command: `roar-orchestrator`, `roar-pitch`, ...
fn service_name(cmd: &Cmd) -> String {
    match cmd {
        Cmd::Orchestrator => "roar-orchestrator".into(),
        Cmd::Processor { model } => format!("roar-{model}"),
        Cmd::Projector { .. } => "roar-projector".into(),
        Cmd::Pipeline => "roar-pipeline".into(),
        Cmd::Webhooks => "roar-webhooks".into(),
        Cmd::Dev { .. } => "roar-dev".into(),
        _ => "roar".into(),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    telemetry::init(&cfg.telemetry, &service_name(&cli.command));
    let _ = telemetry::metrics_handle();
    let result = run_command(cli.command, cfg).await;
    // The exporter sends from its own thread and blocks while it does.
    let _ = tokio::task::spawn_blocking(telemetry::flush_traces).await;
    result
}

async fn run_command(command: Cmd, cfg: Config) -> Result<()> {
    match command {
        Cmd::Token { sub, roles, ttl } => {
            let mut cfg = cfg;
            // After `roar dev` (which made its own key), tokens for that stack.
            if cfg.auth.jwt_secret.expose().is_empty() {
                if let Some(key) = dev::existing_token_key(&cfg) {
                    cfg.auth.jwt_secret = roar_common::config::Secret::new(key);
                }
            }
            let auth = Authenticator::new(&cfg.auth);
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            let token = auth.mint(&sub, &roles, ttl).context(
                "set auth.jwt_secret (ROAR_AUTH__JWT_SECRET), or run `roar dev` once in dev.dir",
            )?;
            println!("{token}");
            Ok(())
        }
        Cmd::Openapi => {
            print!("{}", roar_orchestrator::openapi::yaml());
            Ok(())
        }
        Cmd::Topics { check } => {
            let drift = roar::topics::ensure(&cfg, check).await?;
            print!("{}", roar::topics::describe(&drift, !check));
            if check && !drift.is_empty() {
                anyhow::bail!(
                    "{} topic(s) keep their messages for the wrong time: run `roar topics` to set them",
                    drift.len()
                );
            }
            Ok(())
        }
        Cmd::Dlq {
            action: DlqCmd::List { json },
        } => {
            print!("{}", roar::dlq::list(&cfg, json).await?);
            Ok(())
        }
        Cmd::Dlq {
            action: DlqCmd::Redrive { id },
        } => {
            print!("{}", roar::dlq::redrive(&cfg, &id).await?);
            Ok(())
        }
        Cmd::Models {
            action:
                Some(ModelsCmd::Fetch {
                    model,
                    variation,
                    url_root,
                    force,
                }),
            ..
        } => {
            let dest = tokio::task::spawn_blocking(move || {
                fetch_weights(&cfg, &model, &variation, url_root.as_deref(), force)
            })
            .await??;
            println!("{}", dest.display());
            Ok(())
        }
        Cmd::Models { json, .. } => {
            print!("{}", services::describe_models(&cfg, json));
            Ok(())
        }
        Cmd::Dev { no_install } => {
            let cancel = shutdown::install();
            dev::run(cfg, dev::DevOptions { no_install }, cancel).await
        }
        Cmd::Orchestrator => {
            cfg.check_role_secrets(Role::Orchestrator)?;
            let cancel = shutdown::install();
            services::bootstrap_topics(&cfg).await?;
            let listener = tokio::net::TcpListener::bind(cfg.http.addr)
                .await
                .with_context(|| format!("binding {}", cfg.http.addr))?;
            services::orchestrator(Arc::new(cfg), listener, cancel).await
        }
        Cmd::Projector {
            action: Some(ProjectorCmd::Migrate),
        } => {
            cfg.check_role_secrets(Role::Projector)?;
            let pool = roar_projections::connect(
                cfg.database.url.expose(),
                2,
                std::time::Duration::from_secs(30),
            )
            .await?;
            roar_projections::migrate(&pool).await?;
            println!("read model migrated");
            Ok(())
        }
        Cmd::Projector {
            action: Some(ProjectorCmd::Rebuild),
        } => {
            cfg.check_role_secrets(Role::Projector)?;
            roar::replay::rebuild(&cfg, shutdown::install()).await
        }
        Cmd::Replay {
            model,
            since,
            files,
            variation,
            model_version,
        } => {
            let spec = roar_orchestrator::commands::replay::ReplaySpec {
                model,
                since,
                files,
                variation,
                model_version,
                actor: "cli:replay".into(),
            };
            roar::replay::replay(&cfg, spec).await.map(|_| ())
        }
        Cmd::Projector { action: None } => {
            cfg.check_role_secrets(Role::Projector)?;
            let cancel = shutdown::install();
            services::bootstrap_topics(&cfg).await?;
            services::projector(Arc::new(cfg), cancel).await
        }
        Cmd::Pipeline => {
            let cancel = shutdown::install();
            services::bootstrap_topics(&cfg).await?;
            services::pipeline(Arc::new(cfg), cancel).await
        }
        Cmd::Webhooks => {
            cfg.check_role_secrets(Role::Webhooks)?;
            let cancel = shutdown::install();
            services::bootstrap_topics(&cfg).await?;
            services::webhooks(Arc::new(cfg), cancel).await
        }
        Cmd::Processor { model } => {
            cfg.check_role_secrets(Role::Processor)?;
            let cancel = shutdown::install();
            services::bootstrap_topics(&cfg).await?;
            match model.as_str() {
                "probe" => services::probe(Arc::new(cfg), cancel).await,
                m => services::processor(Arc::new(cfg), m, cancel).await,
            }
        }
    }
}

/// `roar models fetch`: each model's downloader fills `<models_dir>/<model>/<variation>/`,
/// printing its steps on stderr (blocking I/O: called off the runtime).
fn fetch_weights(
    cfg: &Config,
    model: &str,
    variation: &str,
    url_root: Option<&str>,
    force: bool,
) -> Result<PathBuf> {
    let dir = cfg.processor.models_dir.join(model);
    let mut report = |step: &str| eprintln!("{step}");
    match model {
        "demucs" => {
            let root = roar_demucs::hub::resolve_root(url_root);
            eprintln!(
                "fetching demucs {variation} from {root} into {}",
                dir.display()
            );
            Ok(roar_demucs::hub::fetch_with(
                &dir,
                variation,
                &root,
                force,
                &mut report,
            )?)
        }
        "musicgen" => {
            let root = roar_musicgen::hub::resolve_root(url_root);
            eprintln!(
                "fetching musicgen {variation} from {root} into {}",
                dir.display()
            );
            Ok(roar_musicgen::hub::fetch_with(
                &dir,
                variation,
                &root,
                force,
                &mut report,
            )?)
        }
        "gemma3n" => {
            // The lyrics worker reads every Gemma from <models_dir>/gemma/<variation>/.
            let dir = cfg.processor.models_dir.join("gemma");
            let root = roar_gemma::hub::resolve_root(url_root);
            eprintln!(
                "fetching gemma3n {variation} from {root} into {}",
                dir.display()
            );
            Ok(roar_gemma::hub::fetch(
                &dir,
                variation,
                &root,
                force,
                &mut report,
            )?)
        }
        other => anyhow::bail!(
            "`roar models fetch` downloads demucs, musicgen and gemma3n weights only, not {other:?}"
        ),
    }
}
