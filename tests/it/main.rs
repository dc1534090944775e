//! Integration tests: the real `offboard` binary against the simulator on a
//! random loopback port, with a fresh SQLite file per test (and a fresh
//! PostgreSQL database per test in `postgres`).

mod api;
mod bench;
mod browser;
mod claims;
mod connectors;
mod console;
mod contract;
mod documented;
mod dropfolder;
mod faults;
mod helpers;
mod http_server;
mod intake_edges;
mod notify;
mod people;
mod pipeline;
mod postgres;
mod reconcile;
mod resume;
mod revoke;
mod safety;
mod small_things;
mod undo;
mod upgrade;
mod webdriver;
