use std::path::PathBuf;

use crate::config::Problem;

/// Every error of the edge agent. `Display` gives the English text and
/// [`AgentError::message_fr`] the French one.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration file or the command-line flags have one or more problems.
    #[error("invalid agent configuration ({origin}):\n  - {}\nFix these values and start the agent again.", english_list(problems))]
    Config { origin: String, problems: Vec<Problem> },

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

    /// The miner's HTTP API failed or returned an invalid response.
    #[error("miner API {url}: {reason}")]
    MinerApi { url: String, reason: String },

    /// The async runtime could not run a blocking task.
    #[error("internal task failed: {0}. Restart the agent")]
    Task(String),
}

fn english_list(problems: &[Problem]) -> String {
    problems.iter().map(|problem| problem.en.as_str()).collect::<Vec<_>>().join("\n  - ")
}

impl AgentError {
    /// Returns the French text of the error, for operators whose locale is French.
    /// Details from other software (the OS, NVML, TOML parser) stay in English.
    pub fn message_fr(&self) -> String {
        match self {
            AgentError::Config { origin, problems } => {
                let list = problems.iter().map(|problem| problem.fr.as_str()).collect::<Vec<_>>().join("\n  - ");
                format!("configuration de l'agent invalide ({origin}) :\n  - {list}\nCorrigez ces valeurs et relancez l'agent.")
            }
            AgentError::ConfigRead { path, source } => {
                format!("impossible de lire la configuration de l'agent {} : {source}. Vérifiez le chemin donné à --config", path.display())
            }
            AgentError::BufferIo { path, source, .. } => format!(
                "échec d'entrée-sortie du tampon sur {} : {source}. Vérifiez que le répertoire du tampon existe, que l'agent peut y écrire et que le disque n'est pas plein",
                path.display()
            ),
            AgentError::BufferVersion { path, found, supported } => format!(
                "le segment de tampon {} est au format version {found}, mais cet agent ne lit que la version {supported}. Utilisez un agent qui lit ce format, ou déplacez le répertoire du tampon pour repartir d'un tampon vide",
                path.display()
            ),
            AgentError::BufferNotSegment { path, .. } => format!(
                "{} n'est pas un segment de tampon de l'agent (il ne commence pas par les octets magiques d'un segment). Retirez-le du répertoire du tampon",
                path.display()
            ),
            AgentError::RecordTooLarge { size, max_bytes } => {
                format!("une mesure de {size} octets ne tient pas dans un tampon de {max_bytes} octets. Augmentez buffer.max_bytes")
            }
            AgentError::NvmlUnavailable { reason } => {
                format!("NVML n'est pas disponible ({reason}). Installez le pilote NVIDIA, ou passez --simulate pour fonctionner sans GPU")
            }
            AgentError::UnknownGpu { index, count } => unknown_gpu_text_fr(*index, *count),
            AgentError::Gpu { index, reason, .. } => format!("GPU {index} : le pilote a refusé ou échoué l'opération : {reason}"),
            AgentError::NoGpuSource => {
                "le contrôle des GPU est désactivé sur ce rig (pas de pilote NVIDIA ni de --simulate) : la commande ne peut pas s'exécuter".to_owned()
            }
            AgentError::RaplUnavailable { path, reason } => {
                format!("la puissance du processeur ne peut pas être lue depuis {} : {reason}", path.display())
            }
            AgentError::MinerApi { url, reason } => format!("API du mineur {url} : {reason}"),
            AgentError::Task(reason) => format!("une tâche interne a échoué : {reason}. Relancez l'agent"),
        }
    }
}

/// French text for a GPU index that does not exist, naming the valid range.
pub(crate) fn unknown_gpu_text_fr(index: u32, count: u32) -> String {
    match count {
        0 => format!("aucun GPU d'indice {index} : ce rig ne signale aucun GPU"),
        1 => format!("aucun GPU d'indice {index} : le seul indice valide est 0"),
        _ => format!("aucun GPU d'indice {index} : les indices valides vont de 0 à {}", count - 1),
    }
}

/// Text for a GPU index that does not exist, naming the valid range.
pub(crate) fn unknown_gpu_text(index: u32, count: u32) -> String {
    match count {
        0 => format!("no GPU with index {index}: this rig reports no GPU"),
        1 => format!("no GPU with index {index}: the only valid index is 0"),
        _ => format!("no GPU with index {index}: valid indexes are 0 to {}", count - 1),
    }
}
