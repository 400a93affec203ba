import MPQ
print(OperatorRegistry.supportedOpTypes)
