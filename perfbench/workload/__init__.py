"""What each request sends: prompts, lengths, sampling, traces, sessions, images, datasets, tokens, arrival schedules."""
