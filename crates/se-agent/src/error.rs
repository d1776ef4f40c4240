use std::path::PathBuf;

/// Every error of the edge agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration file or the command-line flags have one or more problems.
    #[error("invalid agent configuration ({origin}):\n  - {}\nFix these values and start the agent again.", problems.join("\n  - "))]
    Config { origin: String, problems: Vec<String> },

    /// The configuration file could not be read.
    #[error("cannot read the agent configuration {path}: {source}. Check the path given to --config")]
    ConfigRead { path: PathBuf, source: std::io::Error },

    /// A file or directory of the on-disk buffer could not be read or written.
    #[error("buffer I/O failed on {path} while trying to {action}: {source}. Check that the buffer directory exists, is writable by the agent and that the disk is not full")]
    BufferIo { path: PathBuf, action: &'static str, source: std::io::Error },

    /// A buffer segment was written by a newer or unknown format version.
    #[error("buffer segment {path} has format version {found}, but this agent reads version {supported} only. Run an agent version that reads it, or move the buffer directory away to start with an empty buffer")]
    BufferVersion { path: PathBuf, found: u32, supported: u32 },

    /// A file in the buffer directory is not a buffer segment.
    #[error("{path} is not an agent buffer segment ({reason}). Move it out of the buffer directory")]
    BufferNotSegment { path: PathBuf, reason: String },

    /// A record is larger than the whole buffer may hold.
    #[error("a reading of {size} bytes does not fit in a buffer of {max_bytes} bytes. Raise buffer.max_bytes")]
    RecordTooLarge { size: u64, max_bytes: u64 },

    /// The NVIDIA Management Library could not be loaded or initialised.
    #[error("NVML is not available ({reason}). Install the NVIDIA driver, or pass --simulate to run without a GPU")]
    NvmlUnavailable { reason: String },

    /// A GPU index outside the rig's GPUs.
    #[error("{}", unknown_gpu_text(*index, *count))]
    UnknownGpu { index: u32, count: u32 },

    /// A GPU query or setting failed.
    #[error("GPU {index}: {action} failed: {reason}")]
    Gpu { index: u32, action: &'static str, reason: String },

    /// No GPU source is active, so GPU commands cannot run.
    #[error("GPU control is off on this rig (no NVIDIA driver and no --simulate), so the command cannot run")]
    NoGpuSource,

    /// CPU package power (RAPL) cannot be read.
    #[error("CPU package power cannot be read from {path}: {reason}")]
    RaplUnavailable { path: PathBuf, reason: String },

    /// The miner's HTTP API did not answer as expected.
    #[error("miner API {url}: {reason}")]
    MinerApi { url: String, reason: String },

    /// The async runtime could not run a blocking task.
    #[error("internal task failed: {0}. Restart the agent")]
    Task(String),
}

/// Text for a GPU index that does not exist, naming the valid range.
pub(crate) fn unknown_gpu_text(index: u32, count: u32) -> String {
    match count {
        0 => format!("no GPU with index {index}: this rig reports no GPU"),
        1 => format!("no GPU with index {index}: the only valid index is 0"),
        _ => format!("no GPU with index {index}: valid indexes are 0 to {}", count - 1),
    }
}
