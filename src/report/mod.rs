//! Stage 5: what was found -> text and machine formats. stdout carries the report only.

pub mod explain;
pub mod flows;
pub mod html;
pub mod verdicts;
