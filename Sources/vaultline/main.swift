import VaultlineCore
print("vaultline")
