//! Carries out commands received over MQTT and builds their acknowledgements.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::config::MinerSettings;
use crate::protocol::{Ack, AckCode, Command, CommandMessage};
use crate::sources::{GpuSource, PowerLimits};
use crate::AgentError;

/// A GPU source shared by the sampler and the command executor.
pub type SharedGpus = Arc<Mutex<Box<dyn GpuSource>>>;

/// Number of recent command ids remembered, so that a redelivered command
/// (QoS 1 may deliver twice) gets its first ack again instead of running twice.
const REMEMBERED_COMMANDS: usize = 64;
/// Bytes of a failed miner command's error output quoted in the ack.
const OUTPUT_EXCERPT_BYTES: usize = 300;

/// Power limit to apply for a request of `requested_w` watts: the request
/// clamped to the card's range, and whether clamping changed it.
pub fn plan_power_limit(requested_w: f64, limits: &PowerLimits) -> (f64, bool) {
    let applied = requested_w.clamp(limits.min_w, limits.max_w);
    (applied, applied != requested_w)
}

/// Runs `action` on the GPU source in a blocking thread.
pub async fn with_gpus<T, F>(gpus: &SharedGpus, action: F) -> Result<T, AgentError>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn GpuSource) -> Result<T, AgentError> + Send + 'static,
{
    let gpus = gpus.clone();
    tokio::task::spawn_blocking(move || {
        let mut source = gpus.lock().unwrap_or_else(PoisonError::into_inner);
        action(source.as_mut())
    })
    .await
    .map_err(|error| AgentError::Task(error.to_string()))?
}

fn watts(value: f64) -> String {
    format!("{} W", (value * 10.0).round() / 10.0)
}

/// Acknowledgement of a GPU command that failed with `error`.
fn gpu_failure(id: &str, error: &AgentError) -> Ack {
    let code = match error {
        AgentError::UnknownGpu { .. } => AckCode::UnknownGpu,
        AgentError::NoGpuSource => AckCode::NoGpuControl,
        _ => AckCode::GpuError,
    };
    Ack::new(Some(id.to_owned()), false, code, error.to_string(), error.message_fr())
}

/// Carries out commands one at a time.
pub struct CommandExecutor {
    gpus: Option<SharedGpus>,
    miner: MinerSettings,
    recent: VecDeque<(String, Ack)>,
}

impl CommandExecutor {
    /// `gpus` is `None` when the rig has no GPU source.
    pub fn new(gpus: Option<SharedGpus>, miner: MinerSettings) -> CommandExecutor {
        CommandExecutor { gpus, miner, recent: VecDeque::new() }
    }

    /// Carries out `message` and returns its acknowledgement. A command id seen
    /// recently is not carried out again; its first ack is returned.
    pub async fn execute(&mut self, message: CommandMessage) -> Ack {
        if let Some((_, ack)) = self.recent.iter().find(|(id, _)| *id == message.id) {
            tracing::info!(command_id = %message.id, "command already carried out; sending its ack again");
            return ack.clone();
        }
        let action = message.command.action();
        let ack = match message.command {
            Command::SetPowerLimit { gpu, watts } => self.set_power_limit(&message.id, gpu, watts).await,
            Command::RestoreDefaultLimits => self.restore_default_limits(&message.id).await,
            Command::StopMiner => self.run_miner_command(&message.id, MinerAction::Stop).await,
            Command::StartMiner => self.run_miner_command(&message.id, MinerAction::Start).await,
        };
        if ack.ok {
            tracing::info!(command_id = %message.id, action, message = %ack.message, "command carried out");
        } else {
            tracing::warn!(command_id = %message.id, action, message = %ack.message, "command failed");
        }
        self.recent.push_back((message.id, ack.clone()));
        if self.recent.len() > REMEMBERED_COMMANDS {
            self.recent.pop_front();
        }
        ack
    }

    async fn set_power_limit(&self, id: &str, gpu: u32, requested_w: f64) -> Ack {
        let Some(gpus) = &self.gpus else {
            return gpu_failure(id, &AgentError::NoGpuSource);
        };
        let outcome = with_gpus(gpus, move |source| {
            let count = source.count()?;
            if gpu >= count {
                return Err(AgentError::UnknownGpu { index: gpu, count });
            }
            let limits = source.power_limits(gpu)?;
            let (applied, clamped) = plan_power_limit(requested_w, &limits);
            source.set_power_limit(gpu, applied)?;
            Ok((applied, clamped, limits))
        })
        .await;
        match outcome {
            Ok((applied, clamped, limits)) => {
                let (message, message_fr) = if clamped {
                    (
                        format!(
                            "GPU {gpu} power limit set to {}: {} is outside the card's range of {} to {}",
                            watts(applied),
                            watts(requested_w),
                            watts(limits.min_w),
                            watts(limits.max_w)
                        ),
                        format!(
                            "limite de puissance du GPU {gpu} réglée à {} : {} est hors de la plage de la carte, de {} à {}",
                            watts(applied),
                            watts(requested_w),
                            watts(limits.min_w),
                            watts(limits.max_w)
                        ),
                    )
                } else {
                    (
                        format!("GPU {gpu} power limit set to {}", watts(applied)),
                        format!("limite de puissance du GPU {gpu} réglée à {}", watts(applied)),
                    )
                };
                let mut ack = Ack::new(Some(id.to_owned()), true, AckCode::Done, message, message_fr);
                ack.applied_watts = Some(applied);
                ack.clamped = clamped;
                ack
            }
            Err(error) => gpu_failure(id, &error),
        }
    }

    async fn restore_default_limits(&self, id: &str) -> Ack {
        let Some(gpus) = &self.gpus else {
            return gpu_failure(id, &AgentError::NoGpuSource);
        };
        let outcome = with_gpus(gpus, |source| {
            let count = source.count()?;
            let mut failures = Vec::new();
            for index in 0..count {
                let result = source.power_limits(index).and_then(|limits| source.set_power_limit(index, limits.default_w));
                if let Err(error) = result {
                    failures.push(error.to_string());
                }
            }
            Ok((count, failures))
        })
        .await;
        match outcome {
            Ok((count, failures)) if failures.is_empty() => Ack::new(
                Some(id.to_owned()),
                true,
                AckCode::Done,
                format!("default power limit restored on {count} GPUs"),
                format!("limite de puissance par défaut rétablie sur {count} GPU"),
            ),
            Ok((count, failures)) => {
                let restored = count as usize - failures.len();
                Ack::new(
                    Some(id.to_owned()),
                    false,
                    AckCode::GpuError,
                    format!("default power limit restored on {restored} of {count} GPUs; {}", failures.join("; ")),
                    format!("limite de puissance par défaut rétablie sur {restored} GPU sur {count} ; {}", failures.join(" ; ")),
                )
            }
            Err(error) => gpu_failure(id, &error),
        }
    }

    async fn run_miner_command(&self, id: &str, action: MinerAction) -> Ack {
        let id = Some(id.to_owned());
        let (argv, key, verb_fr) = match action {
            MinerAction::Stop => (&self.miner.stop_command, "miner.stop_command", "d'arrêt"),
            MinerAction::Start => (&self.miner.start_command, "miner.start_command", "de démarrage"),
        };
        let Some(argv) = argv else {
            return Ack::new(
                id,
                false,
                AckCode::NotConfigured,
                format!("no miner command is configured for this action; set {key} in the agent configuration"),
                format!("aucune commande {verb_fr} du mineur n'est configurée ; renseignez {key} dans la configuration de l'agent"),
            );
        };
        let command_line = argv.join(" ");
        match run_argv(argv, self.miner.command_timeout).await {
            Ok(()) => Ack::new(
                id,
                true,
                AckCode::Done,
                format!("miner command `{command_line}` succeeded"),
                format!("la commande du mineur `{command_line}` a réussi"),
            ),
            Err(failure) => Ack::new(
                id,
                false,
                AckCode::CommandFailed,
                format!("miner command `{command_line}` failed: {}", failure.english()),
                format!("la commande du mineur `{command_line}` a échoué : {}", failure.french()),
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum MinerAction {
    Stop,
    Start,
}

/// Failure of a miner command.
#[derive(Debug)]
enum RunFailure {
    Spawn(String),
    Exit { status: String, output: String },
    Timeout(Duration),
}

impl RunFailure {
    fn english(&self) -> String {
        match self {
            RunFailure::Spawn(error) => format!("cannot start it: {error}"),
            RunFailure::Exit { status, output } => format!("it exited with {status}: {output}"),
            RunFailure::Timeout(limit) => format!("it did not finish within {limit:?} and was killed"),
        }
    }

    fn french(&self) -> String {
        match self {
            RunFailure::Spawn(error) => format!("impossible de la lancer : {error}"),
            RunFailure::Exit { status, output } => format!("elle s'est terminée avec {status} : {output}"),
            RunFailure::Timeout(limit) => format!("elle n'a pas fini en {limit:?} et a été arrêtée"),
        }
    }
}

/// Runs a program with arguments (no shell) and waits for it, killing it after `timeout`.
async fn run_argv(argv: &[String], timeout: Duration) -> Result<(), RunFailure> {
    let Some((program, arguments)) = argv.split_first() else {
        return Err(RunFailure::Spawn("the command is empty".to_owned()));
    };
    let mut child = tokio::process::Command::new(program)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| RunFailure::Spawn(error.to_string()))?;
    let mut stderr = child.stderr.take();
    let run = async {
        let mut output = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_end(&mut output).await;
        }
        (child.wait().await, output)
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Err(RunFailure::Timeout(timeout)),
        Ok((Err(error), _)) => Err(RunFailure::Spawn(error.to_string())),
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), output)) => {
            let text = String::from_utf8_lossy(&output);
            let text = text.trim();
            let start = text.len().saturating_sub(OUTPUT_EXCERPT_BYTES);
            let start = (start..text.len()).find(|index| text.is_char_boundary(*index)).unwrap_or(text.len());
            let output = if text.is_empty() { "no error output".to_owned() } else { text[start..].to_owned() };
            Err(RunFailure::Exit { status: status.to_string(), output })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fake::FakeGpus;

    const CARD: PowerLimits = PowerLimits { current_w: 250.0, min_w: 100.0, max_w: 300.0, default_w: 250.0 };

    fn miner(stop: Option<&[&str]>) -> MinerSettings {
        MinerSettings {
            api: None,
            api_timeout: Duration::from_secs(1),
            stop_command: stop.map(|argv| argv.iter().map(|part| (*part).to_owned()).collect()),
            start_command: None,
            command_timeout: Duration::from_secs(5),
        }
    }

    fn executor(count: u32) -> (CommandExecutor, crate::sources::fake::FakeGpusHandle) {
        let (gpus, handle) = FakeGpus::new(count, CARD);
        let shared: SharedGpus = Arc::new(Mutex::new(Box::new(gpus)));
        (CommandExecutor::new(Some(shared), miner(None)), handle)
    }

    fn command(id: &str, command: Command) -> CommandMessage {
        CommandMessage { id: id.to_owned(), command }
    }

    #[test]
    fn plan_keeps_value_in_range() {
        assert_eq!(plan_power_limit(220.0, &CARD), (220.0, false));
    }

    #[test]
    fn plan_clamps_above_max() {
        assert_eq!(plan_power_limit(400.0, &CARD), (300.0, true));
    }

    #[test]
    fn plan_clamps_below_min() {
        assert_eq!(plan_power_limit(50.0, &CARD), (100.0, true));
    }

    #[tokio::test]
    async fn restore_sets_defaults() {
        let (mut executor, handle) = executor(2);
        executor.execute(command("a", Command::SetPowerLimit { gpu: 1, watts: 150.0 })).await;
        let ack = executor.execute(command("b", Command::RestoreDefaultLimits)).await;
        assert!(ack.ok, "{ack:?}");
        assert_eq!(handle.current_limit(1), Some(250.0));
    }

    #[tokio::test]
    async fn repeated_id_runs_once() {
        let (mut executor, handle) = executor(1);
        let first = executor.execute(command("same", Command::SetPowerLimit { gpu: 0, watts: 200.0 })).await;
        let second = executor.execute(command("same", Command::SetPowerLimit { gpu: 0, watts: 200.0 })).await;
        assert_eq!(first, second);
        assert_eq!(handle.set_calls(), 1);
    }

    #[tokio::test]
    async fn no_gpu_source_is_reported() {
        let mut executor = CommandExecutor::new(None, miner(None));
        let ack = executor.execute(command("n", Command::SetPowerLimit { gpu: 0, watts: 200.0 })).await;
        assert_eq!(ack.code, AckCode::NoGpuControl);
    }

    #[tokio::test]
    async fn unconfigured_miner_command_fails() {
        let (mut executor, _) = executor(1);
        let ack = executor.execute(command("m", Command::StopMiner)).await;
        assert_eq!(ack.code, AckCode::NotConfigured);
        assert!(ack.message.contains("miner.stop_command"), "{}", ack.message);
    }

    #[tokio::test]
    async fn miner_command_runs_argv() {
        let scratch = tempfile::tempdir().unwrap();
        let marker = scratch.path().join("stopped");
        let marker_text = marker.to_str().unwrap();
        let mut executor = CommandExecutor::new(None, miner(Some(&["touch", marker_text])));
        let ack = executor.execute(command("s", Command::StopMiner)).await;
        assert!(ack.ok, "{ack:?}");
        assert!(marker.exists());
    }

    #[tokio::test]
    async fn failing_miner_command_quotes_stderr() {
        let mut executor = CommandExecutor::new(None, miner(Some(&["ls", "/definitely/not/here"])));
        let ack = executor.execute(command("f", Command::StopMiner)).await;
        assert_eq!(ack.code, AckCode::CommandFailed);
        assert!(ack.message.contains("/definitely/not/here"), "{}", ack.message);
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let mut executor = CommandExecutor::new(None, miner(Some(&["/no/such/program"])));
        let ack = executor.execute(command("p", Command::StopMiner)).await;
        assert_eq!(ack.code, AckCode::CommandFailed);
        assert!(ack.message.contains("cannot start"), "{}", ack.message);
    }
}
