//! The integration tests: the real api and workers against the real Redis and RabbitMQ, a fresh
//! namespace per test so they run in parallel. Each asserts what a user of the REST surface sees.

mod admin;
mod audit;
mod auth;
mod batch;
mod batch_submit;
mod broker;
mod cancel;
mod cli;
mod dashboard;
mod deploy;
mod faults;
mod google;
mod grpc;
mod harness;
mod input;
mod kinds;
mod lifecycle;
mod list;
mod openapi;
mod otlp;
mod outages;
mod proto;
mod proxy;
mod queue_type;
mod rabbit_cluster;
mod redis_cluster;
mod redis_replicas;
mod retries;
mod tls;
mod trace;
mod wait;
