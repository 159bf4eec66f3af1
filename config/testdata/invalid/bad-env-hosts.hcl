function "a" {
  module = "a.wasm"
  env = {
    GOOD      = "yes"
    "BAD-KEY" = "no"
  }
  allowed_hosts = ["https://api.example.com", "api.example.com", "ftp://files.example.com", "https://user:pw@example.com", "https://example.com/?q=1"]
}

queue "q" {
  subject  = "q"
  function = "b"
}

topic "t" {
  subject = "t"
  subscriber "s" { function = "A" }
}
