//! effbench-routing: the analysis of a routing row, a cascade from a cheap model to the base one.
//!
//! The claim it measures: "for 80% of user queries a distilled model can match GPT-4 quality at
//! 1/50th the cost". On each item a cheap model (a quantization or a student) answers first; when
//! its confidence is below a threshold the item goes to the base model. effbench already records,
//! per item and technique, whether the answer was right and every choice's log-likelihood, so
//! routing is pure analysis of those records: no I/O and no model code here.
//!
//! - [`technique`]: the name grammar, `route:CHEAP@[SIGNAL:]THRESHOLD | route:CHEAP@sweep`.
//! - [`signal`]: the confidence signals (choice margin, top probability, mean token
//!   probability), each in [0, 1].
//! - [`mod@cascade`]: the cascade at one threshold ([`cascade()`]) and over every threshold
//!   ([`sweep()`]), with its Pareto frontier, the oracle bound, and the share routable at no
//!   significant loss by fixed-sequence non-inferiority testing.
//! - [`plot`]: the sweep as an SVG and as a markdown section.
//!
//! Cost counts the cheap model on every item plus the base model on the escalated ones: the
//! cheap model's confidence is what decides, so it always runs. See docs/routing.md.

pub mod cascade;
pub mod plot;
pub mod signal;
pub mod technique;

pub use cascade::{
    cascade, keeps, sweep, Oracle, Outcome, Point, Routable, RoutingError, Sweep, SweepOptions,
};
pub use plot::{markdown, svg};
pub use signal::{answer_confidence, choice_confidence, Signal};
pub use technique::{RouteSpec, Threshold, GRAMMAR};
