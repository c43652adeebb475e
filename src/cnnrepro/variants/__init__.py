"""The named variants (registry) and the figures their sources document (documented); `cnnrepro variants`."""
