use anyhow::Context;
use clap::{Parser, Subcommand};
use ipcam_mqtt::config::Config;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// RTSP IP cameras as Home Assistant devices: on-demand re-streaming with an MQTT control plane.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The configuration file (YAML, or the add-on's options.json).
    #[arg(long, short, global = true, default_value = "cameras.yaml")]
    config: PathBuf,
    /// Log filter, e.g. `info` or `ipcam_mqtt=debug` (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info,rumqttd=warn")]
    log_level: String,
    /// Where settings, credentials and the Home Assistant camera state are kept, in place of
    /// the `data_dir` option (the add-on: /data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The port Home Assistant's ingress proxy connects to (the add-on's run script passes the
    /// one the Supervisor assigned).
    #[arg(long)]
    ingress_port: Option<u16>,
    /// The add-on's slug (the run script passes it), so each device page links to the sidebar.
    #[arg(long)]
    addon_slug: Option<String>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the add-on (the default).
    Run,
    /// Check the configuration and list every problem, naming the field.
    CheckConfig,
    /// Run on an embedded broker and a synthetic camera: no camera or broker needed.
    #[cfg(feature = "demo")]
    Demo(ipcam_mqtt::demo::DemoOptions),
    /// Print what cry detection hears in a file or RTSP stream, patch by patch.
    Classify(ipcam_mqtt::audio::classify::ClassifyOptions),
    /// Serve a synthetic RTSP camera (for tests and benchmarks).
    TestCamera(ipcam_mqtt::testcam::TestCameraOptions),
}

fn main() -> std::process::ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                ipcam_mqtt::secret::redact_urls(&format!("{e:#}"))
            );
            std::process::ExitCode::FAILURE
        }
    }
}

/// `/data` in the add-on (the Supervisor keeps and backs it up), else
/// `$XDG_DATA_HOME/ipcam-mqtt`, else `~/.local/share/ipcam-mqtt`, else `./ipcam-data`.
fn default_data_dir() -> PathBuf {
    if ipcam_mqtt::ha::in_addon() {
        return PathBuf::from("/data");
    }
    let xdg = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty());
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty());
    match (xdg, home) {
        (Some(xdg), _) => PathBuf::from(xdg).join("ipcam-mqtt"),
        (None, Some(home)) => PathBuf::from(home).join(".local/share/ipcam-mqtt"),
        (None, None) => PathBuf::from("ipcam-data"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Cmd::Run);
    if let Cmd::CheckConfig = command {
        let config = Config::load(&cli.config, &default_data_dir())?;
        println!(
            "{}: OK, {} camera(s): {}",
            cli.config.display(),
            config.cameras.len(),
            config
                .cameras
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    gstreamer::init().context("GStreamer failed to initialise")?;
    ipcam_mqtt::media::pipeline::check_plugins().map_err(anyhow::Error::msg)?;
    if let Cmd::TestCamera(options) = &command {
        return ipcam_mqtt::testcam::run_test_camera(options);
    }
    if let Cmd::Classify(options) = &command {
        let model = options.model.clone().unwrap_or_else(|| {
            match Config::load(&cli.config, &default_data_dir()) {
                Ok(config) => config.cry_model,
                Err(_) => default_data_dir().join(ipcam_mqtt::config::CRY_MODEL_FILE),
            }
        });
        return ipcam_mqtt::audio::classify::run(options, model);
    }
    // Snapshots encode on a blocking thread once a minute: tokio's default 10 s keep-alive would
    // start a new thread for each, and each new thread left malloc arenas more fragmented (RSS
    // rose about 1.5 MB a minute under viewer churn).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(15 * 60))
        .build()?;
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        tokio::spawn(watch_signals(cancel.clone()));
        match command {
            #[cfg(feature = "demo")]
            Cmd::Demo(options) => ipcam_mqtt::demo::run(options, cancel).await,
            _ => {
                let mut config = Config::load(&cli.config, &default_data_dir())?;
                if let Some(dir) = cli.data_dir {
                    config.data_dir = dir;
                }
                config.ingress_port = cli.ingress_port;
                config.addon_slug = cli.addon_slug.filter(|s| !s.is_empty());
                ipcam_mqtt::app::run(config, cancel).await
            }
        }
    })
}

/// glibc allocator tunables, set before any thread starts; `MALLOC_ARENA_MAX` and
/// `MALLOC_MMAP_THRESHOLD_` in the environment still win.
/// - Two arenas. Every GStreamer and tokio thread that allocates gets an arena of its own, and
///   memory freed across them is seldom given back: under viewer churn RSS crept by about 40
///   bytes per RTSP viewer and jumped 5 MB at a time.
/// - A fixed mmap threshold of 256 KB. glibc's own threshold rises to the largest block freed,
///   so after the first snapshot a decoder's 3 MB frames were carved from the heap and kept
///   there; fixed, they are mapped and go back to the system (about 2 MB per 1080p camera).
fn tune_malloc() {
    // SAFETY: mallopt only sets an allocator tunable; no thread is running yet.
    unsafe {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        }
    }
}

/// The first SIGINT/SIGTERM shuts down cleanly; a second one exits at once.
async fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    let mut received = 0;
    loop {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        received += 1;
        if received == 1 {
            cancel.cancel();
        } else {
            eprintln!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}
