"""The servers a user would pick instead of seqcast's, each serving the same forecaster with one worker and one
torch thread: LitServe (Lightning's server, with its batching), Ray Serve (``@serve.batch``) and a plain
Starlette app on uvicorn with no batching (the hand-written app). Each module runs as
``python -m bench.peers.<name> CHECKPOINT PORT``; `seqcast-bench serve --peers` loads them with wrk."""
