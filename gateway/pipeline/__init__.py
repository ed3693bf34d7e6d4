"""One request sequence for every door: authenticate, parse to one internal request, route, admit,
dispatch, meter, record. The doors (openai_door, anthropic_door) only parse their wire format and
render the answer; everything else happens once, in core.Pipeline."""
