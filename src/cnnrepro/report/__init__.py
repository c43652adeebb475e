"""`cnnrepro report`: measured against documented, with a verdict per figure (build.py is the command)."""
