function "a" {
  module  = 42
  timeout = 5
  memory  = var.memory
  env     = { PORT = 8080, "1BAD" = "x", OK = "y" }
  publish = "email.outbox"
}

function "b" {
  module        = upper("b.wasm")
  allowed_hosts = [1, 2]
  instance      = "cold"
}

queue "q" {
  subject     = "q"
  function    = "a"
  concurrency = "8"
  dead_letter = null
}

metrics {
  enabled = "no"
}
