function "send" {
  module = "send.wasm"
}

function "send" {
  module = "send2.wasm"
}

queue "emails" {
  subject  = "email.send"
  function = "send"
}

queue "emails" {
  subject  = "email.other"
  function = "send"
}

topic "emails" {
  subject = "email.topic"
  subscriber "a" { function = "send" }
}

topic "signups" {
  subject = "user.registered"
  subscriber "a" { function = "send" }
  subscriber "a" { function = "send" }
}

nats {
  listen = "127.0.0.1:4222"
}

nats {
  listen = "127.0.0.1:4223"
}

metrics {}
metrics {}

queue "retries" {
  subject  = "retry.me"
  function = "send"
  function = "send"
  retry {
    max_attempts = 2
  }
  retry {
    max_attempts = 3
  }
}
