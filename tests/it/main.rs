//! The integration tests: one binary, one module per feature, over real sockets, a real
//! PostgreSQL and a real `redis-server` that the tests start themselves ([`support`]).

mod support;

mod access_log;
mod admin;
mod batched_limits;
mod check;
mod connections;
mod demo;
mod deploy;
mod docs;
mod form_overrides;
mod generation;
mod guard;
mod held_pages;
mod http2;
mod http2_floods;
mod identities;
mod integrity;
mod keyset;
mod layout;
mod leases;
mod limits;
mod listener;
mod metrics;
mod outcomes;
mod pacing;
mod pagination;
mod parallel_exports;
mod postgres;
mod postgres_answers;
mod postgres_settings;
mod proxy;
mod quotas;
mod rate_limits;
mod redis_topologies;
mod shared_limits;
mod signals;
mod stack;
mod tenants;
mod tls;
mod traces;
mod type_matrix;
mod upgrades;
mod uploads;
mod walkthrough;
