//! The command line: clap definitions (their doc comments are the `--help` text) and the
//! commands, which call into the library and add context to its errors with `anyhow`.

mod iwan;

use crate::config::{self, Loaded};
use crate::data::cifar::{Cifar100, SplitName};
use crate::data::hierarchy::Hierarchy;
use crate::data::summary::DataSummary;
use crate::data::usf::UsfNorms;
use crate::data::{DataRoot, fetch};
use crate::experiment::{self, RunOptions};
use crate::index::bench::{self, BenchOptions, SyntheticCodes};
use crate::report::check;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Fast, semantically aware image retrieval on CIFAR-100, reproduced and measured.
///
/// `harness` regenerates the report "Fast Image Retrieval using Binary Hashes and Network of
/// Word Associations" from real data: hierarchy-based class embeddings (Barz & Denzler), binary
/// hash codes from a hidden layer (Lin et al.) and IWAN word-association search. Experiments are
/// YAML configs (see configs/); results go to results/<experiment>/<run-id>/.
///
/// Data is read from a local folder laid out like ../shared/data: --data-root, then
/// $HARNESS_DATA, then `data.root` in the config, then ../shared/data and ./shared/data.
#[derive(Debug, Parser)]
#[command(name = "harness", version, propagate_version = true)]
pub struct Cli {
    /// Data root holding cifar-100-binary/, hierarchy/, usf/ (overrides $HARNESS_DATA and data.root).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment: every stage of every run of a config, resuming finished stages.
    ///
    /// Without CONFIG the embedded default (configs/default.yaml) runs. Each run writes
    /// manifest.json (config hash, git revision, crate versions, machine, times),
    /// config.resolved.yaml and its stage outputs to <out>/<run-id>/. Running the same config
    /// again resumes: stages already completed under the same config are skipped.
    ///
    /// Example: harness run configs/sweep_topiwk.yaml
    Run {
        /// Experiment config (YAML).
        config: Option<PathBuf>,
        /// Experiment folder (default: results/<name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Shared cache of trained models and embeddings (default: results/cache, or the
        /// cache/ folder beside --out).
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
    },
    /// Check configs and print each fully resolved: defaults filled in, sweeps expanded.
    ///
    /// Exits 0 when every file is valid; otherwise prints what is wrong (file, line, field,
    /// what was expected) and exits 2.
    ///
    /// Example: harness validate configs/*.yaml
    Validate {
        /// Config files.
        #[arg(required = true)]
        configs: Vec<PathBuf>,
        /// Print only one line per file.
        #[arg(long)]
        brief: bool,
    },
    /// Build the class similarity matrix S and the class embedding from the hierarchy.
    ///
    /// Writes similarity.csv (S[u][v] = 1 - height(lcs(u,v)) / max_height over the 100 fine
    /// classes), its heat map similarity.png / .svg, and class_embedding.csv (label, name,
    /// d0..): Barz & Denzler's unit-sphere embedding for d = 100, the best rank-d approximation
    /// of S for smaller d.
    Semantics {
        /// Output folder.
        #[arg(long, default_value = "results/semantics", value_name = "DIR")]
        out: PathBuf,
        /// Embedding dimension d (1..=100).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        d: u32,
    },
    /// Compare a run's metrics.csv with a stored baseline; exit 1 on a regression.
    ///
    /// Quality metrics (mP, mAP, mHP, mAHP, mAHP_mean, AP_full) may drop by at most
    /// --tolerance (absolute); latencies may grow by at most --time-ratio (and must grow by more
    /// than --time-floor seconds to count) and queries/s may fall by at most that ratio; index
    /// bytes per item may not grow. Prints a table of every
    /// baseline row.
    ///
    /// Example: harness check results/ci/<run-id> --baseline experiments/baselines/ci.csv
    Check {
        /// The run folder (holding metrics.csv).
        run_dir: PathBuf,
        /// Baseline CSV (method,protocol,metric,k,value).
        #[arg(long, value_name = "FILE")]
        baseline: PathBuf,
        /// Largest allowed absolute drop of a quality metric.
        #[arg(long, default_value_t = 0.01)]
        tolerance: f64,
        /// Largest allowed slowdown factor of a timing.
        #[arg(long, default_value_t = 5.0)]
        time_ratio: f64,
        /// A timing must also grow by more than this many seconds to count as a regression.
        #[arg(long, default_value_t = 0.001)]
        time_floor: f64,
    },
    /// Re-render tables from a finished run or experiment folder, without recomputing.
    ///
    /// A run folder gets tables/paper.md and tables/paper.csv: the report's Tables 1-4 (exact,
    /// hash + re-rank, IWAN at the run's topIWK when it is 3 or 4) with ours under every
    /// protocol, the published value and the difference. An experiment folder gets that for each
    /// finished run and, for a sweep, tables/sweep.md and tables/sweep.csv (one row per run).
    ///
    /// Example: harness report results/sweep_topiwk
    Report {
        /// A run folder (holding manifest.json) or an experiment folder.
        dir: PathBuf,
    },
    /// Serve a page that compares a finished run's methods query by query, in a browser.
    ///
    /// Loads the run's embeddings, codes, indices and IWAN network once, then serves a grid of
    /// test images (filter by class, jump to an id); clicking one shows the top k of exact
    /// search, hash + re-rank and IWAN side by side, with class names, scores, same class /
    /// superclass marks, latency, P@k and HP@k, and IWAN's word paths. The JSON API behind it
    /// is in the README. Binds to loopback unless --addr says otherwise; Ctrl-C stops it.
    ///
    /// Example: harness serve results/default/<run-id>
    Serve {
        /// The run folder.
        run_dir: PathBuf,
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
    },
    /// Inspect or install the data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Benchmarks that print one JSON object per method and setting.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Explain or export a finished run's IWAN network (image-word association network).
    #[command(subcommand)]
    Iwan(iwan::IwanCommand),
}

/// `harness bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time every index method on .npy inputs or seeded synthetic data.
    ///
    /// Prints one JSON line per method: method, n, dim, bits, k, threads, median and p95
    /// single-query seconds, batch queries/s, build seconds and bytes per item. The queries are
    /// the first Q rows of the data. scripts/bench_faiss.sh runs FAISS on the same files.
    ///
    /// Example: harness bench search --embeddings results/cache/embed-*/embeddings/test.npy
    ///          --codes results/cache/embed-*/codes/test.npy --bits 48 --k 100
    Search(BenchSearchArgs),
    /// Time IWAN retrieval on a finished run's network, per topIWK and topWWK.
    ///
    /// Rebuilds the network from the run's stored word-model output for each combination, then
    /// times the first Q test queries one at a time (k results each, nothing excluded). Prints
    /// one JSON line per combination: database, images, words, nodes, edges, build seconds,
    /// median / p95 / mean seconds per query without the word model, and the same plus the
    /// word model's measured per-image cost (head on cached features + encoder).
    /// scripts/bench_pgrouting.sh runs PostgreSQL + pgRouting on the same queries.
    ///
    /// Example: harness bench iwan results/default/<run-id> --db train --top-iwk 1,2,4,8
    Iwan(iwan::BenchIwanArgs),
    /// Time training steps and inference of a network on real CIFAR-100 training images.
    ///
    /// Training: batch from u8 pixels, forward, cosine loss, backward, SGD step (momentum
    /// 0.9). Inference: forward passes without gradients; for a frozen EfficientNet-Lite0 the
    /// feature pass of the features stage, bicubic upsampling included. Prints one JSON line
    /// per mode: framework, mode, encoder, input_size, batch, threads, images, seconds,
    /// images_per_second. scripts/bench_torch.sh runs the same cifar_cnn in PyTorch.
    ///
    /// Examples: harness bench model --encoder cifar_cnn --batch 64 --threads 2
    ///           harness bench model --encoder efficientnet_lite0 --input-size 224 --mode infer
    Model(BenchModelArgs),
}

/// Options of `harness bench model`.
#[derive(Debug, Args)]
pub struct BenchModelArgs {
    /// Encoder: cifar_cnn, efficientnet_lite0 or alexnet.
    #[arg(long, default_value = "cifar_cnn")]
    pub encoder: config::Encoder,
    /// Input side in pixels (cifar_cnn: 32; default 224 for the others).
    #[arg(long)]
    pub input_size: Option<u32>,
    /// Train EfficientNet-Lite0 end to end (`freeze: false`) instead of timing its frozen
    /// feature pass.
    #[arg(long)]
    pub fine_tune: bool,
    /// What to time, comma-separated: train, infer.
    #[arg(long, value_delimiter = ',', default_value = "train,infer")]
    pub mode: Vec<crate::throughput::Mode>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hash bits h.
    #[arg(long, default_value_t = 48)]
    pub h: u32,
    /// Embedding dimension d.
    #[arg(long, default_value_t = 100)]
    pub d: u32,
    /// burn CPU backend: flex (what runs use), or ndarray (needs the `ndarray` cargo feature).
    #[arg(long, default_value = "flex")]
    pub backend: crate::model::CpuBackend,
    /// CIFAR-100 split whose first images are timed: train or test.
    #[arg(long, default_value = "train")]
    pub split: SplitName,
    /// Frozen EfficientNet-Lite0: time burn's plain layers (conv2d, batch norm, relu6 on NCHW
    /// batches) instead of the fused channels-last inference the features stage runs.
    #[arg(long)]
    pub plain_layers: bool,
    /// Frozen EfficientNet-Lite0: also write the pooled features of the first `--batch`
    /// images of the split to this .npy file (f32, batch x 1280), untimed, for the PyTorch
    /// agreement check of scripts/bench_efficientnet.sh.
    #[arg(long, value_name = "FILE")]
    pub save_features: Option<PathBuf>,
}

/// Options of `harness bench search`.
#[derive(Debug, Args)]
pub struct BenchSearchArgs {
    /// Embeddings, .npy f32 `N x d` (as written by the embed stage).
    #[arg(long, value_name = "FILE")]
    pub embeddings: Option<PathBuf>,
    /// Packed codes, .npy u64 `N x ceil(h/64)`.
    #[arg(long, value_name = "FILE")]
    pub codes: Option<PathBuf>,
    /// Generate N seeded synthetic items instead of reading files.
    #[arg(long, value_name = "N", conflicts_with_all = ["embeddings", "codes"])]
    pub synthetic: Option<usize>,
    /// Synthetic embedding dimension d.
    #[arg(long, default_value_t = 100)]
    pub dim: usize,
    /// Code length h in bits (0: 64 x the columns of the codes file).
    #[arg(long, default_value_t = 64)]
    pub bits: usize,
    /// Queries (the first Q rows) for the batch run.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Queries timed one at a time (default: Q).
    #[arg(long)]
    pub single_queries: Option<usize>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Threads for the batch run (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed for synthetic data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Comma-separated subset of exact, hamming, hamming_rerank, mih, asymmetric.
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Synthetic code distribution: clustered (100 centres, 10% bit flips) or random.
    #[arg(long, default_value = "clustered", value_parser = ["clustered", "random"])]
    pub code_dist: String,
    /// Shortlist factor N'/k for the re-rankers.
    #[arg(long, default_value_t = 2.0)]
    pub shortlist: f64,
    /// Multi-index-hashing substrings m (default: chosen from N and h).
    #[arg(long)]
    pub mih_m: Option<usize>,
    /// Write each method's batch results as <method>_ids.npy and <method>_scores.npy here.
    #[arg(long, value_name = "DIR")]
    pub dump_dir: Option<PathBuf>,
}

/// `harness data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Load CIFAR-100, the hierarchy and the USF norms and print counts, checksums and names.
    Info {
        /// Data root (default: as for every command).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Download the official cifar-100-binary.tar.gz, check its md5 and install it under a root.
    ///
    /// Needs internet access unless --archive points at a local copy of the archive. The
    /// hierarchy, USF norms and pretrained weights are not fetched; copy them from a checkout of
    /// the shared data.
    Fetch(FetchArgs),
}

/// Options of `harness data fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Root to install into (creates <root>/cifar-100-binary/).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Install from this local archive instead of downloading.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// Where to download from.
    #[arg(long, default_value = fetch::OFFICIAL_URL)]
    pub url: String,
    /// Expected md5 of the archive.
    #[arg(long, default_value = fetch::OFFICIAL_MD5)]
    pub md5: String,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    match cli.command {
        Command::Run { config, out, cache } => {
            let loaded = load_config(config.as_deref())?;
            let opts = RunOptions {
                out,
                cache,
                data_root: cli.data_root,
                progress,
            };
            let outcomes = experiment::run(&loaded, &opts).with_context(|| {
                format!(
                    "experiment `{}` ({}) failed",
                    loaded.config.name, loaded.origin
                )
            })?;
            for o in &outcomes {
                let reused = if o.reused.is_empty() {
                    String::new()
                } else {
                    format!(" (reused: {})", o.reused.join(", "))
                };
                println!("results: {}{reused}", o.dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { configs, brief } => validate(&configs, brief),
        Command::Semantics { out, d } => {
            let root = DataRoot::resolve(cli.data_root.as_deref(), None)?;
            experiment::semantics_stage(&root, d as usize, &out)
                .with_context(|| format!("building the class embedding into {}", out.display()))?;
            println!(
                "wrote {}, {} and the heat map {}",
                out.join("similarity.csv").display(),
                out.join("class_embedding.csv").display(),
                out.join("similarity.{png,svg}").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            run_dir,
            baseline,
            tolerance,
            time_ratio,
            time_floor,
        } => {
            let metrics = run_dir.join("metrics.csv");
            let run = check::read_metrics(&metrics)?;
            let base = check::read_metrics(&baseline)?;
            let tol = check::Tolerances {
                quality: tolerance,
                time_ratio,
                time_floor_s: time_floor,
            };
            let cmp = check::compare(&run, &base, &baseline, tol)?;
            print!("{}", cmp.table());
            let bad = cmp.regressions().count();
            if bad == 0 {
                println!(
                    "no regression against {} ({} metrics compared)",
                    baseline.display(),
                    cmp.rows.len()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{bad} regression(s) against {}", baseline.display());
                Ok(ExitCode::from(1))
            }
        }
        Command::Data(DataCommand::Info { root }) => {
            data_info(root.as_deref().or(cli.data_root.as_deref()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Search(a)) => {
            let defaults = BenchOptions::default();
            let opts = BenchOptions {
                embeddings: a.embeddings,
                codes: a.codes,
                synthetic: a.synthetic,
                dim: a.dim,
                bits: a.bits,
                queries: a.queries,
                k: a.k,
                threads: a.threads.unwrap_or(defaults.threads),
                seed: a.seed,
                methods: a.methods,
                code_dist: if a.code_dist == "random" {
                    SyntheticCodes::Random
                } else {
                    SyntheticCodes::Clustered
                },
                single_queries: a.single_queries,
                shortlist: a.shortlist,
                mih_m: a.mih_m,
                dump_dir: a.dump_dir,
            };
            for record in bench::run(&opts).context("bench search")? {
                println!("{}", serde_json::to_string(&record)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Model(a)) => {
            bench_model(&a, cli.data_root.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Iwan(a)) => {
            iwan::bench(&a, cli.data_root.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { dir } => {
            let written = experiment::render::render(&dir)
                .with_context(|| format!("rendering the tables of {}", dir.display()))?;
            for path in written {
                println!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { run_dir, addr } => {
            serve(&run_dir, addr, cli.data_root.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Iwan(cmd) => {
            iwan::run(cmd, cli.data_root.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Data(DataCommand::Fetch(args)) => {
            data_fetch(&args, progress)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn bench_model(a: &BenchModelArgs, data_root: Option<&Path>) -> Result<()> {
    use crate::throughput::{self, Mode, Settings};
    let encoder = a.encoder;
    let default_size = if encoder == config::Encoder::CifarCnn {
        32
    } else {
        224
    };
    // Checked like a config file, so a bad size or h gets the same message.
    let text = format!(
        "name: bench\nmodel: {{encoder: {}, input_size: {}, freeze: {}, h: {}, d: {}}}\n",
        encoder.as_str(),
        a.input_size.unwrap_or(default_size),
        !a.fine_tune && encoder != config::Encoder::Alexnet,
        a.h,
        a.d
    );
    let model = Loaded::from_text("bench model options", text)?.config.model;
    let modes = &a.mode;
    if modes.contains(&Mode::Train)
        && model.encoder == config::Encoder::EfficientnetLite0
        && model.freeze
    {
        bail!("training a frozen EfficientNet-Lite0 trains only the decoder; pass --fine-tune");
    }
    let device = a.backend.device()?;
    let backend = a.backend.as_str();
    let root = DataRoot::resolve(data_root, None)?;
    let cifar = Cifar100::load(&root, false).context("loading CIFAR-100")?;
    let c = crate::artifacts::class_embedding_f32(&root, model.d as usize)?;
    let pretrained = crate::artifacts::pretrained_weights(&root, &model);
    let settings = Settings {
        model,
        batch: a.batch.max(1),
        steps: a.steps.max(1),
        warmup: a.warmup,
        threads: a.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        seed: 42,
        device,
        backend,
        plain_layers: a.plain_layers,
    };
    let split = cifar.split(a.split);
    if let Some(path) = &a.save_features {
        let pretrained = pretrained
            .as_deref()
            .context("EfficientNet-Lite0 weights")?;
        if settings.model.encoder != config::Encoder::EfficientnetLite0 {
            bail!("--save-features is for --encoder efficientnet_lite0");
        }
        let encoder =
            crate::model::efficientnet::EfficientNetLite0::load(pretrained, &settings.device)?;
        let n = settings.batch.min(split.len());
        let features = crate::model::with_threads(settings.threads, || {
            crate::embed::encoder_features(
                &encoder,
                &split.pixels[..n * 3072],
                settings.model.input_size as usize,
                settings.batch,
                false,
                settings.plain_layers,
            )
        })?;
        crate::store::write_atomic(path, |w| {
            crate::store::npy::write_f32(w, n, features.len() / n.max(1), &features)
        })
        .with_context(|| format!("writing {}", path.display()))?;
    }
    for &mode in modes {
        let record = throughput::measure(
            &settings,
            mode,
            &split.pixels,
            &split.fine,
            &c,
            pretrained.as_deref(),
        )?;
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(())
}

fn serve(run_dir: &Path, addr: std::net::SocketAddr, data_root: Option<&Path>) -> Result<()> {
    let served = crate::serve::Served::load(run_dir, data_root)
        .with_context(|| format!("loading the run in {}", run_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() {
            eprintln!("warning: listening on {local}, reachable beyond this machine");
        }
        println!(
            "serving {} at http://{local}/ (Ctrl-C stops)",
            run_dir.display()
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        crate::serve::serve(listener, crate::serve::router(served), shutdown)
            .await
            .context("serving")
    })?;
    println!("stopped");
    Ok(())
}

fn load_config(path: Option<&Path>) -> Result<Loaded> {
    Ok(match path {
        Some(p) => Loaded::from_path(p)?,
        None => Loaded::embedded_default()?,
    })
}

fn validate(paths: &[PathBuf], brief: bool) -> Result<ExitCode> {
    let mut failed = 0;
    for path in paths {
        match Loaded::from_path(path).and_then(|l| l.runs().map(|r| (l, r))) {
            Ok((loaded, runs)) => {
                println!(
                    "ok: {} ({} run{})",
                    path.display(),
                    runs.len(),
                    if runs.len() == 1 { "" } else { "s" }
                );
                if brief {
                    continue;
                }
                let mut base = loaded.config.clone();
                base.sweep = None;
                println!(
                    "# resolved config (defaults filled in){}",
                    if runs.len() > 1 {
                        ", before sweep values"
                    } else {
                        ""
                    }
                );
                print!("{}", config::to_yaml(&base));
                if let Some(sweep) = &loaded.config.sweep {
                    println!(
                        "# sweep ({:?}) over {}:",
                        sweep.mode,
                        sweep.params.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
                for run in &runs {
                    let overrides: Vec<String> = run
                        .overrides
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    println!(
                        "# run {:>3}  {}  config {}  {}",
                        run.index,
                        run.id,
                        &run.hash[..12],
                        overrides.join(" ")
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("invalid: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn data_info(root: Option<&Path>) -> Result<()> {
    let root = DataRoot::resolve(root, None)?;
    println!("data root: {} ({})", root.path.display(), root.chosen_by);
    let cifar = Cifar100::load(&root, false).context("loading CIFAR-100")?;
    let hierarchy = Hierarchy::load(&root.hierarchy_dir(), &cifar.names.fine)
        .context("loading the class hierarchy")?;
    let usf = UsfNorms::load(&root.usf_file()).context("loading the USF norms")?;
    let s = DataSummary::compute(&cifar, [usize::MAX; 2], &hierarchy, &usf);
    println!("\nCIFAR-100 ({})", root.cifar_dir().display());
    println!(
        "{:<6} {:>8} {:>14} {:>16} {:>12}  sha256",
        "split", "records", "per fine class", "per coarse class", "first f/c"
    );
    for sp in &s.splits {
        println!(
            "{:<6} {:>8} {:>14} {:>16} {:>12}  {} ({})",
            sp.split.as_str(),
            sp.records,
            format!("{}..{}", sp.fine_min, sp.fine_max),
            format!("{}..{}", sp.coarse_min, sp.coarse_max),
            format!("{}/{}", sp.first_record.0, sp.first_record.1),
            &sp.sha256[..16],
            if sp.sha256_matches {
                "matches the known value"
            } else {
                "DIFFERS from the known value"
            }
        );
    }
    for split in SplitName::ALL {
        let expected = split.per_class();
        let counts = cifar.split(split).fine_counts();
        if counts.iter().any(|&c| c != expected) {
            println!("note: {split} is not balanced ({expected} per class expected)");
        }
    }
    println!("\ncoarse classes (id: name -> fine ids: names)");
    let n = &cifar.names;
    for (c, coarse) in n.coarse.iter().enumerate() {
        let fines: Vec<String> = (0..n.fine.len())
            .filter(|&f| n.fine_to_coarse[f] as usize == c)
            .map(|f| format!("{f}:{}", n.fine[f]))
            .collect();
        println!("{c:>3}: {coarse:<32} {}", fines.join(" "));
    }
    println!(
        "\nhierarchy: {} nodes, root {} ({}), height {}, {} leaves",
        s.hierarchy_nodes,
        s.hierarchy_root,
        hierarchy.name(s.hierarchy_root),
        s.hierarchy_height,
        hierarchy.n_leaves()
    );
    println!(
        "USF norms: {} rows, {} cues, {} targets, {} distinct words, {} rows with FSG",
        s.usf_rows, s.usf_cues, s.usf_targets, s.usf_words, s.usf_rows_with_fsg
    );
    // How many class labels IWAN can anchor: those that map to at least one USF word by the
    // normalisation rule of iwan::words.
    let vocab = crate::iwan::words::Vocabulary::from_norms(&usf);
    let cover =
        |labels: &[String]| crate::iwan::words::coverage(&vocab, labels.iter().map(String::as_str));
    let (cf, tf) = cover(&cifar.names.fine);
    let (cc, tc) = cover(&cifar.names.coarse);
    let imagenet = match crate::data::imagenet::load_names(&root) {
        Ok(names) => {
            let (ci, ti) = cover(&names);
            format!("ImageNet labels {ci} of {ti}")
        }
        Err(e) => format!("ImageNet labels not read ({e})"),
    };
    println!(
        "USF coverage (labels mapping to at least one USF word): {imagenet}, CIFAR-100 fine names {cf} of {tf}, coarse names {cc} of {tc}"
    );
    Ok(())
}

fn data_fetch(args: &FetchArgs, progress: bool) -> Result<()> {
    let dest = match &args.archive {
        Some(archive) => fetch::install_archive(archive, &args.md5, &args.root)
            .with_context(|| format!("installing {}", archive.display()))?,
        None => {
            let bar = indicatif::ProgressBar::hidden();
            if progress {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "download [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
            }
            let dest = fetch::download_and_install(
                &args.url,
                &args.md5,
                &args.root,
                &mut |done, total| {
                    if let Some(t) = total {
                        bar.set_length(t);
                    }
                    bar.set_position(done);
                },
            )
            .with_context(|| format!("fetching {}", args.url))?;
            bar.finish_and_clear();
            dest
        }
    };
    println!(
        "installed CIFAR-100 at {} (md5 verified, both splits decoded)",
        dest.display()
    );
    Ok(())
}
