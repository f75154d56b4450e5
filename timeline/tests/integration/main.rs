//! The timeline crate's integration tests, one binary: synthetic timelines with known answers (`scenarios`) and the
//! cost, rendering and JSON figures (`cost_render`).

mod common;
mod cost_render;
mod scenarios;
