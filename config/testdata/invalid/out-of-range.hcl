function "a" {
  module  = "a.wasm"
  timeout = "16m"
}

function "b" {
  module  = "b.wasm"
  timeout = "-1s"
}

queue "q1" {
  subject     = "q1"
  function    = "a"
  concurrency = 0
}

queue "q2" {
  subject     = "q2"
  function    = "a"
  concurrency = 1.5
  retry {
    max_attempts = 101
    initial      = "0s"
  }
}

queue "q3" {
  subject     = "q3"
  function    = "a"
  concurrency = 2000
  retry {
    initial = "10s"
    max     = "1s"
  }
}

topic "t" {
  subject   = "t"
  retention = "0s"
  subscriber "s" {
    function   = "a"
    start_from = "beginning"
    retry {
      initial = "10m"
    }
  }
}
