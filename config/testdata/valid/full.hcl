# A file that sets everything at least once.
nats {
  listen     = "127.0.0.1:-1"
  store_dir  = "data/js"
  sync       = "2m"
  max_memory = "64MiB"
  max_store  = "1GB"
}

metrics {
  listen = "127.0.0.1:0"
}

function "welcome_email" {
  module       = "examples/signup/welcome_email/welcome_email.wasm"
  source       = "examples/signup/welcome_email"
  timeout      = "5s"
  idle_timeout = "90s"
  memory       = "64MiB"
  env          = { SENDER = "hello@example.com", RETRIES = "3" }
  publish      = ["email.outbox", "audit.*", "trace.>"]
}

function "crm_sync" {
  module        = "/opt/sluice/crm_sync.wasm"
  instance      = "fresh"
  allowed_hosts = ["https://api.example.com", "http://localhost:8080/v1/"]
}

function "smtp_sender" {
  module = "smtp.wasm"
}

topic "user_registered" {
  subject   = "user.registered"
  retention = "24h"
  subscriber "welcome_email" { function = "welcome_email" }
  subscriber "crm_sync" {
    function    = "crm_sync"
    concurrency = 4
    rate        = "10/s"
    start_from  = "all"
    dead_letter = "dlq.crm"
    on_success  = "crm.synced"
    on_failure  = "crm.failed"
    retry {
      max_attempts = 8
      initial      = "1s"
      max          = "5m"
    }
  }
}

queue "emails" {
  subject        = "email.send"
  function       = "smtp_sender"
  concurrency    = 8
  rate           = "200/s"
  max_event_size = "256KiB"
  retry {
    max_attempts = 5
    initial      = "500ms"
    max          = "1m"
  }
  dead_letter    = "dlq.emails"
}

queue "orders" {
  subject  = "orders.*.created"
  function = "smtp_sender"
  retry { initial = "2s" }
}
