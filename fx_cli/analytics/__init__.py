"""Built-in federated estimators over tabular data, with the data site's privacy guards."""
