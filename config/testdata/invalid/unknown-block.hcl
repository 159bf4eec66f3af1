function "send" {
  module = "send.wasm"
}

queue "emails" {
  subject  = "email.send"
  function = "send"
  retries {
    max_attempts = 3
  }
}

cron "nightly" {
  schedule = "@daily"
}

metric {
  listen = "127.0.0.1:9464"
}
