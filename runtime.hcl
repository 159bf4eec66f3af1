# sluice runtime configuration: `go run ./cmd/sluice run` loads this file.
# Each function names its guest source; sluice builds the .wasm when it is
# missing or older than the source (Go with GOOS=wasip1).

nats {
  listen    = "127.0.0.1:4222"
  store_dir = ".sluice/jetstream"
  sync      = "always" # fsync before acknowledging; "1s" trades that for speed
}

# --- examples/signup: one event, every interested service gets its copy ---

function "welcome_email" {
  module  = "examples/signup/welcome_email/welcome_email.wasm"
  source  = "examples/signup/welcome_email"
  timeout = "5s"
  memory  = "64MiB"
  publish = ["email.send"]
}

function "welcome_sms" {
  module  = "examples/signup/welcome_sms/welcome_sms.wasm"
  source  = "examples/signup/welcome_sms"
  timeout = "5s"
  memory  = "64MiB"
  publish = ["sms.outbox"]
}

function "profile_store" {
  module  = "examples/signup/profile_store/profile_store.wasm"
  source  = "examples/signup/profile_store"
  timeout = "5s"
  memory  = "64MiB"
  publish = ["profile.stored"]
}

topic "user_registered" {
  subject = "user.registered"

  subscriber "welcome_email" { function = "welcome_email" }
  subscriber "welcome_sms" { function = "welcome_sms" }
  subscriber "profile_store" {
    function = "profile_store"
    retry {
      max_attempts = 8
      initial      = "1s"
      max          = "5m"
    }
  }
}

# --- examples/emails: a queue drained by four concurrent invocations ---

function "sender" {
  module  = "examples/emails/sender/sender.wasm"
  source  = "examples/emails/sender"
  timeout = "10s"
  memory  = "64MiB"
  env     = { SENDER = "hello@example.com" }
  publish = ["email.sent"]
}

queue "emails" {
  subject     = "email.send"
  function    = "sender"
  concurrency = 4
  rate        = "20/s"
  retry {
    max_attempts = 5
    initial      = "500ms"
    max          = "1m"
  }
  dead_letter = "dlq.emails"
}

# --- examples/flaky: retries with backoff, then a dead letter ---

function "flaky" {
  module  = "examples/flaky/flaky/flaky.wasm"
  source  = "examples/flaky/flaky"
  timeout = "5s"
  memory  = "64MiB"
  publish = ["flaky.done"]
}

function "always_fails" {
  module  = "examples/flaky/always_fails/always_fails.wasm"
  source  = "examples/flaky/always_fails"
  timeout = "5s"
  memory  = "64MiB"
}

queue "flaky" {
  subject  = "jobs.flaky"
  function = "flaky"
  retry {
    max_attempts = 5
    initial      = "200ms"
    max          = "2s"
  }
}

queue "payments" {
  subject  = "payments.charge"
  function = "always_fails"
  retry {
    max_attempts = 4
    initial      = "250ms"
    max          = "5s"
  }
}
