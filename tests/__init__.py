"""pasa_det's tests, in folders that mirror the package."""
