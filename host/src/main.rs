//! The `spindle` command: parses flags and calls the library.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use spindle::http::Server;
use spindle::http::server::Timeouts;
use spindle::manifest::Manifest;
use spindle::nn::policy::{DeviceChoice, EngineChoice};
use spindle::runtime::{App, ComponentCache, HostOptions, Limits};
use spindle::telemetry::admin::Admin;
use spindle::telemetry::traces::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Serverless WebAssembly inference functions, from a spin.toml.
#[derive(Parser)]
#[command(name = "spindle", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr: `text`, or `json` (one object per line, with the
    /// request's span fields). Filter with RUST_LOG (default `spindle=info,wasmtime=warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
}

/// `--log-format`.
#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

// Parsed once per process: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the app's components over HTTP (like `spin up`).
    Up {
        /// The manifest.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Address of the admin listener serving Prometheus metrics at /metrics; `none` turns it
        /// off. Keep it off the public address.
        #[arg(long, value_name = "ADDR|none", default_value = "127.0.0.1:9090")]
        admin_listen: AdminListen,
        /// A PEM certificate chain: with --tls-key, the listener speaks TLS (HTTP/2 and HTTP/1.1
        /// by ALPN). Without them it speaks HTTP/1.1 and HTTP/2 with prior knowledge.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Append one JSON line per request (time, request id, principal, client, route,
        /// component, models, engine, status, bytes, duration) to FILE, or write them to stdout
        /// with `-`.
        #[arg(long, value_name = "FILE|-")]
        audit_log: Option<PathBuf>,
        /// Run each component's build command first.
        #[arg(long)]
        build: bool,
        /// Default linear-memory limit per instance, in MiB.
        #[arg(long, default_value_t = 256)]
        memory_limit_mib: u64,
        /// Default wall-clock deadline per request, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        /// Largest request body accepted, in bytes (larger gets 413).
        #[arg(long, default_value_t = 32 << 20)]
        max_body_bytes: usize,
        /// Largest model a function may hand wasi:nn as bytes (`load`), in bytes.
        #[arg(long, default_value_t = 64 << 20)]
        max_model_bytes: usize,
        /// Bytes of models the graphs a function compiles from bytes it hands over may add up to;
        /// past it, its least recently used ones are dropped.
        #[arg(long, default_value_t = 256 << 20)]
        max_guest_graph_bytes: usize,
        /// Connections open at once; more wait in the listen backlog until one closes.
        #[arg(long, default_value_t = spindle::http::server::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// Connections the kernel queues while all --max-connections are taken (capped by
        /// net.core.somaxconn); past it, clients' connection attempts are retried seconds later.
        #[arg(long, value_name = "N", default_value_t = spindle::http::server::DEFAULT_LISTEN_BACKLOG)]
        listen_backlog: u32,
        /// Largest response body a function may write, in bytes (larger is a 500).
        #[arg(long, default_value_t = 64 << 20)]
        max_response_bytes: usize,
        /// Requests each component runs at once.
        #[arg(long, default_value_t = 32)]
        max_concurrent: usize,
        /// Requests that may wait per component before new ones get 503.
        #[arg(long, default_value_t = 128)]
        max_queued: usize,
        /// Seconds a connection may stay open with no request on it (HTTP/1.1 keep-alive and HTTP/2).
        #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        idle_timeout_s: u64,
        /// Seconds a client may take to send a request's line and headers, from their first byte.
        #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        header_timeout_s: u64,
        /// Seconds a response write may make no progress (a client that stops reading) before the
        /// connection is closed.
        #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        send_timeout_s: u64,
        /// Seconds a client may take to send its request body (408 after).
        #[arg(long, default_value_t = 30)]
        body_timeout_s: u64,
        /// Where compiled components are cached [default: $XDG_CACHE_HOME/spindle or ~/.cache/spindle].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Compile every component at start, ignoring and not writing the cache.
        #[arg(long, conflicts_with = "cache_dir")]
        no_cache: bool,
        /// Compile components and load their models at start (and on reload, before the new
        /// version is swapped in), instead of on first use; readiness is false until they are.
        #[arg(long)]
        preload: bool,
        /// Rebuild a component when its `build.watch` files change, and reload when spin.toml, a
        /// component's .wasm or a mounted file changes (like `spin watch`). SIGHUP reloads
        /// without it.
        #[arg(long)]
        watch: bool,
        /// Inference engine for components that do not choose one.
        #[arg(long, value_enum, default_value_t = Engine::Auto)]
        engine: Engine,
        /// Device for components that do not choose one.
        #[arg(long, value_enum, default_value_t = Device::Auto)]
        device: Device,
        /// The ONNX Runtime shared library [default: $ORT_DYLIB_PATH, or found in the active
        /// Python's onnxruntime package].
        #[arg(long, value_name = "PATH")]
        onnxruntime: Option<PathBuf>,
        /// Threads each CPU engine job uses. The inference pool runs cores / N jobs at once, so
        /// jobs × threads never exceeds the cores: more threads cut one large request's latency,
        /// fewer (the default, 1) give the most throughput under concurrent requests.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        engine_threads: u16,
        /// Provide no wasi:nn at all, like Spin: only functions that carry their own (portable
        /// builds) can run.
        #[arg(long)]
        no_wasi_nn: bool,
        /// Behave like a host without named graphs: `load-by-name` finds nothing, so
        /// functions load their mounted model files themselves.
        #[arg(long)]
        no_named_models: bool,
        /// Run every compute alone, even for models whose `model.json` asks for dynamic
        /// batching (their `max_batch_size` still holds).
        #[arg(long)]
        no_batching: bool,
        /// MiB of each instance's linear memory and tables that the next instance reuses, reset
        /// with memset (only the pages touched, where the kernel can tell) rather than unmapped
        /// with madvise; 0 unmaps all of it, as wasmtime does by default.
        #[arg(long, value_name = "N", default_value_t = 8)]
        keep_resident_mib: usize,
        /// How many tasks each runtime worker polls between looks for new connections, I/O and
        /// signals. Tokio's default, 61, suits tasks that return within microseconds; a guest
        /// runs up to an epoch tick (10 ms) before it yields, so with every worker running guests
        /// a new connection waited up to 61 ticks.
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        event_interval: u32,
        /// On SIGTERM or SIGINT: seconds to let requests in flight finish before exiting (new
        /// connections are refused at once; Kubernetes' default grace period is 30 s).
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        shutdown_timeout_s: u64,
    },
    /// Add a model to the app (like `spin new`): copy it under models/NAME/, write its
    /// model.json from the graph, and add its component and routes to the manifest.
    New {
        #[command(subcommand)]
        template: NewTemplate,
    },
    /// Manage the bearer tokens a manifest's `access` names.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run each component's build command (like `spin build`).
    Build {
        /// The manifest.
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
        /// Also compose each wasi:nn function with the wasi:nn provider into NAME.portable.wasm,
        /// and write spin.portable.toml.
        #[arg(long)]
        portable: bool,
    },
}

/// `spindle new …`.
#[derive(Subcommand)]
enum NewTemplate {
    /// Tensors in, tensors out over the Open Inference Protocol at /v2/models/NAME/..., served
    /// by the generic protocol function (functions/oip): no code to write.
    Oip {
        /// The model's name, as clients send it (letters, digits, '_', '-', '.'; e.g. resnet50_v1.5).
        name: String,
        /// The component's id [default: the name where it is a valid id; else lowercased, each
        /// run of other characters one '-', and 'model-' before a leading digit].
        #[arg(long)]
        id: Option<String>,
        /// The ONNX model, with its weights inside.
        #[arg(long, value_name = "FILE.onnx")]
        model: PathBuf,
        /// Largest batch, written to model.json (0: the first dimension is not a batch).
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_batch_size: u32,
        /// Turn on dynamic batching: how long a compute may wait for others to join it.
        #[arg(long, value_name = "MICROSECONDS", requires = "max_batch_size")]
        max_queue_delay_us: Option<u64>,
        /// The manifest to add to, or its folder (created if missing).
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
    },
    /// An image classifier: a function crate (functions/ID) from a template, with POST
    /// /models/NAME/classify (an image in, top-k labels out) and the Open Inference Protocol.
    Classifier {
        /// The model's name, as clients send it (letters, digits, '_', '-', '.'; e.g. resnet50_v1.5).
        name: String,
        /// The component's id and crate name [default: the name where it is a valid id; else
        /// lowercased, each run of other characters one '-', and 'model-' before a leading digit].
        #[arg(long)]
        id: Option<String>,
        /// The ONNX model: one FP32 RGB image input, [1, 3, H, W] or [1, H, W, 3].
        #[arg(long, value_name = "FILE.onnx")]
        model: PathBuf,
        /// The class labels, one per line, in the output's order.
        #[arg(long, value_name = "FILE")]
        labels: PathBuf,
        /// Image size to resize to, where the model leaves it open.
        #[arg(long, value_name = "WIDTHxHEIGHT", value_parser = parse_size)]
        size: Option<(u32, u32)>,
        /// The output that scores the classes [default: the first FP32 output].
        #[arg(long, value_name = "NAME")]
        output: Option<String>,
        /// Per-channel (R,G,B) mean subtracted after scaling pixels to [0, 1]
        /// (ImageNet: 0.485,0.456,0.406).
        #[arg(long, value_name = "R,G,B", value_parser = parse_rgb, default_value = "0,0,0")]
        mean: [f32; 3],
        /// Per-channel divisor after the mean (ImageNet: 0.229,0.224,0.225).
        #[arg(long, value_name = "R,G,B", value_parser = parse_rgb, default_value = "1,1,1")]
        std: [f32; 3],
        /// The model answers logits: turn them into probabilities with a softmax.
        #[arg(long)]
        softmax: bool,
        /// Largest batch, written to model.json for the protocol endpoints.
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_batch_size: u32,
        /// The manifest to add to, or its folder (created if missing).
        #[arg(short = 'f', long = "from", default_value = "spin.toml")]
        manifest: PathBuf,
    },
}

/// `--size 224x224`.
fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let parsed = s.split_once(['x', 'X']).and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
    parsed
        .filter(|&(w, h)| (1..=8192).contains(&w) && (1..=8192).contains(&h))
        .ok_or_else(|| format!("'{s}': give WIDTHxHEIGHT, each 1 to 8192"))
}

/// `--mean 0.485,0.456,0.406`.
fn parse_rgb(s: &str) -> Result<[f32; 3], String> {
    let values: Vec<f32> = s.split(',').map(|v| v.trim().parse::<f32>().map_err(|e| format!("'{v}': {e}"))).collect::<Result<_, _>>()?;
    <[f32; 3]>::try_from(values).ok().filter(|v| v.iter().all(|x| x.is_finite())).ok_or_else(|| format!("'{s}': give three numbers, R,G,B"))
}

/// `spindle token …`.
#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new token for PRINCIPAL: print it once, and append only its SHA-256 to FILE.
    Add {
        /// Who the token is for: 1–64 letters, digits or `. _ - @`; logged and audited by name.
        principal: String,
        /// The tokens file a manifest's `access = { tokens_file = "…" }` names (created with mode 0600).
        #[arg(long)]
        file: PathBuf,
    },
}

/// `--admin-listen`: an address, or `none`.
#[derive(Clone)]
struct AdminListen(Option<SocketAddr>);

impl std::str::FromStr for AdminListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self(None)),
            addr => addr.parse().map(|a| Self(Some(a))).map_err(|e| format!("{e}: give HOST:PORT or none")),
        }
    }
}

/// `--engine`, as the library's [`EngineChoice`].
#[derive(Clone, Copy, ValueEnum)]
enum Engine {
    Auto,
    Tract,
    Onnxruntime,
}

impl From<Engine> for EngineChoice {
    fn from(engine: Engine) -> Self {
        match engine {
            Engine::Auto => EngineChoice::Auto,
            Engine::Tract => EngineChoice::Tract,
            Engine::Onnxruntime => EngineChoice::Onnxruntime,
        }
    }
}

/// `--device`, as the library's [`DeviceChoice`].
#[derive(Clone, Copy, ValueEnum)]
enum Device {
    Auto,
    Cpu,
    Gpu,
}

impl From<Device> for DeviceChoice {
    fn from(device: Device) -> Self {
        match device {
            Device::Auto => DeviceChoice::Auto,
            Device::Cpu => DeviceChoice::Cpu,
            Device::Gpu => DeviceChoice::Gpu,
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _tracing = spindle::telemetry::traces::init(match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    })?;
    match cli.command {
        Command::Token { command: TokenCommand::Add { principal, file } } => {
            let token = spindle::runtime::access::add_token(&principal, &file)?;
            eprintln!("Added a token for {principal} to {}; it is shown only now:", file.display());
            println!("{token}");
            Ok(())
        }
        Command::New { template } => {
            let created = match template {
                NewTemplate::Oip { name, id, model, max_batch_size, max_queue_delay_us, manifest } => {
                    spindle::scaffold::oip(&manifest, &spindle::scaffold::Oip { name, id, model, max_batch_size, max_queue_delay_us })?
                }
                NewTemplate::Classifier { name, id, model, labels, size, output, mean, std, softmax, max_batch_size, manifest } => {
                    if std.contains(&0.0) {
                        anyhow::bail!("--std {std:?}: a channel's divisor cannot be 0");
                    }
                    let spec = spindle::scaffold::Classifier { name, id, model, labels, size, output, mean, std, softmax, max_batch_size };
                    spindle::scaffold::classifier(&manifest, &spec)?
                }
            };
            for file in &created.files {
                eprintln!("Wrote {}", file.display());
            }
            eprintln!("Added component '{}' and its routes to {}:", created.component, created.manifest.display());
            for route in &created.routes {
                eprintln!("  {route}");
            }
            eprintln!("Serve it: spindle up --build -f {}", created.manifest.display());
            Ok(())
        }
        Command::Build { manifest, portable } => {
            let manifest = Manifest::load(&manifest)?;
            spindle::build::build_all(&manifest)?;
            if portable {
                let written = spindle::build::portable::build(&manifest)?;
                eprintln!("Wrote {}", written.display());
            }
            Ok(())
        }
        Command::Up {
            manifest,
            listen,
            admin_listen,
            audit_log,
            tls_cert,
            tls_key,
            build,
            memory_limit_mib,
            timeout_ms,
            max_body_bytes,
            max_model_bytes,
            max_guest_graph_bytes,
            max_connections,
            listen_backlog,
            max_response_bytes,
            max_concurrent,
            max_queued,
            body_timeout_s,
            idle_timeout_s,
            header_timeout_s,
            send_timeout_s,
            cache_dir,
            no_cache,
            preload,
            watch,
            engine,
            device,
            onnxruntime,
            engine_threads,
            no_wasi_nn,
            no_named_models,
            no_batching,
            keep_resident_mib,
            event_interval,
            shutdown_timeout_s,
        } => {
            let manifest = Manifest::load(&manifest)?;
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(spindle::http::server::tls_acceptor(cert, key)?),
                _ => None,
            };
            if build {
                spindle::build::build_all(&manifest)?;
            }
            let limits = Limits {
                memory_bytes: (memory_limit_mib as usize) << 20,
                timeout: Duration::from_millis(timeout_ms),
                max_body_bytes,
                body_timeout: Duration::from_secs(body_timeout_s),
                max_response_bytes,
                max_concurrent,
                max_queued,
                nn: spindle::nn::NnLimits {
                    max_model_bytes,
                    max_guest_graph_bytes,
                    max_tensor_bytes: (memory_limit_mib as usize) << 20,
                    allow_dynamic_shapes: false,
                },
            };
            let cache = if no_cache {
                ComponentCache::disabled()
            } else {
                match cache_dir.or_else(ComponentCache::default_dir) {
                    Some(dir) => ComponentCache::at(dir),
                    None => {
                        eprintln!("No component cache: neither XDG_CACHE_HOME nor HOME is set (give --cache-dir DIR)");
                        ComponentCache::disabled()
                    }
                }
            };
            let options = HostOptions {
                named_models: !no_named_models,
                batching: !no_batching,
                wasi_nn: !no_wasi_nn,
                cache,
                engine: engine.into(),
                device: device.into(),
                onnxruntime,
                engine_threads: engine_threads.into(),
                keep_resident_bytes: keep_resident_mib << 20,
                preload,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().event_interval(event_interval).build()?;
            let served = runtime.block_on(async {
                let admin = match admin_listen.0 {
                    Some(addr) => Some(Admin::bind(addr, spindle::telemetry::metrics::install()?).await?),
                    None => None,
                };
                let app = App::build(&manifest, &limits, &options)?;
                let mut server = Server::bind(app, listen, listen_backlog).await?.max_connections(max_connections).timeouts(Timeouts {
                    idle: Duration::from_secs(idle_timeout_s),
                    header: Duration::from_secs(header_timeout_s),
                    send: Duration::from_secs(send_timeout_s),
                });
                if let Some(tls) = tls {
                    server = server.tls(tls);
                }
                if let Some(target) = &audit_log {
                    server = server.audit_log(spindle::telemetry::audit::AuditLog::open(target)?);
                }
                let addr = server.local_addr()?;
                let app = server.app();
                println!("Engines:");
                for (engine, device, status) in app.inference_engines().table() {
                    println!("  {engine:<12} {:<4} {status}", device.as_str());
                }
                println!("Components:");
                for c in app.components() {
                    println!(
                        "  {:<16} {} on {}: {}",
                        c.id.as_str(),
                        c.placement().backend.name(),
                        c.placement().device,
                        c.placement().reason
                    );
                }
                if let Some(admin) = admin {
                    println!("Metrics on http://{}/metrics", admin.local_addr()?);
                    tokio::spawn(admin.serve());
                }
                let live = server.live();
                tokio::spawn(spindle::reload::on_sighup(live.clone()));
                let serving = server.serve_until(shutdown_signal(), Duration::from_secs(shutdown_timeout_s));
                tokio::pin!(serving);
                if preload {
                    // The listener is open: readiness answers 503 until everything is loaded.
                    println!("Listening on {}://{addr}, preloading", if tls_cert.is_some() { "https" } else { "http" });
                    tokio::select! {
                        served = &mut serving => return served,
                        loaded = app.preload() => loaded?,
                    }
                }
                let scheme = if tls_cert.is_some() { "https" } else { "http" };
                println!("Serving {scheme}://{addr}");
                for (route, component) in app.router().routes() {
                    println!("  {scheme}://{addr}{route} -> {component}");
                }
                drop(app);
                if watch {
                    tokio::spawn(spindle::reload::watch(live));
                }
                serving.await?;
                println!("Stopped");
                Ok(())
            });
            // A `--watch` build still running is not waited for.
            runtime.shutdown_timeout(Duration::from_secs(1));
            served
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    eprintln!("Shutting down: finishing requests in flight");
}
