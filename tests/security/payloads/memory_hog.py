print("allocating until something stops me", flush=True)
hoard = []
while True:
    hoard.append(b"x" * (32 * 1024 * 1024))
    print(f"holding {len(hoard) * 32} MiB", flush=True)
