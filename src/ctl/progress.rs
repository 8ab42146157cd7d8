//! A spinner with the elapsed time, drawn on stderr while a long request runs, so an operator
//! at a terminal sees that a checkpoint or a restore is progressing. Callers enable it only on
//! a terminal and without `--json`; it never writes to stdout, and it erases its line when the
//! request ends, so the answer prints on a clean line.

use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK: Duration = Duration::from_millis(100);
/// No spinner for answers quicker than this (it would only flicker).
const DELAY: Duration = Duration::from_millis(250);

/// Run `fut`; while it runs, if `what` is given, show `⠋ what… 3.2s` on stderr.
pub async fn spin<F: Future>(what: Option<&str>, fut: F) -> F::Output {
    let Some(what) = what else {
        return fut.await;
    };
    let start = Instant::now();
    let mut tick = tokio::time::interval_at((start + DELAY).into(), TICK);
    tokio::pin!(fut);
    let mut frame = 0;
    let mut drawn = false;
    loop {
        tokio::select! {
            biased;
            out = &mut fut => {
                if drawn {
                    draw("");
                }
                return out;
            }
            _ = tick.tick() => {
                draw(&line(frame, what, start.elapsed()));
                frame += 1;
                drawn = true;
            }
        }
    }
}

/// The spinner's text at `frame` after `elapsed`.
pub fn line(frame: usize, what: &str, elapsed: Duration) -> String {
    let glyph = FRAMES[frame % FRAMES.len()];
    format!("{glyph} {what}… {:.1}s", elapsed.as_secs_f64())
}

/// Replace the current terminal line with `text`.
fn draw(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{text}");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_what_and_the_elapsed_time() {
        assert_eq!(
            line(0, "taking a checkpoint", Duration::from_millis(3240)),
            "⠋ taking a checkpoint… 3.2s"
        );
        assert_eq!(line(11, "x", Duration::ZERO), "⠙ x… 0.0s");
    }

    #[tokio::test]
    async fn without_a_label_it_just_runs_the_future() {
        assert_eq!(spin(None, async { 7 }).await, 7);
    }
}
