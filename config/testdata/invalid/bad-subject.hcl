function "a" {
  module  = "a.wasm"
  publish = ["ok.subject", "bad..subject", "$JS.API.STREAM.DELETE.x", "a.>.b"]
}

queue "q1" {
  subject  = "orders created"
  function = "a"
}

queue "q2" {
  subject  = "orders.>.created"
  function = "a"
}

queue "q3" {
  subject  = "$SYS.events"
  function = "a"
}

queue "q4" {
  subject     = "sluice.internal"
  function    = "a"
  dead_letter = "dlq.*"
}

topic "t1" {
  subject = "_INBOX.abc"
  subscriber "s" {
    function   = "a"
    on_success = "done."
    on_failure = "fail.>"
  }
}

topic "t2" {
  subject = "a*.b"
  subscriber "s" { function = "a" }
}

queue "q5" {
  subject  = ""
  function = "a"
}
