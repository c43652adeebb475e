"""The data stages: download, clean, split, prepare-mnist (`cnnrepro <stage>`), each verifying what it reads."""
