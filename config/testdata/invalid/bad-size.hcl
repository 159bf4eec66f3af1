nats {
  max_memory = "256 MiB"
  max_store  = "10gb"
}

function "a" {
  module = "a.wasm"
  memory = "1KiB"
}

function "b" {
  module = "b.wasm"
  memory = "8GiB"
}

function "c" {
  module = "c.wasm"
  memory = "-5MiB"
}

function "d" {
  module = "d.wasm"
  memory = "1.5MiB"
}

queue "big" {
  subject        = "big.events"
  function       = "a"
  max_event_size = "65MiB"
}

topic "huge" {
  subject        = "huge.events"
  max_event_size = "99999999999999999999"
  subscriber "s" { function = "a" }
}
