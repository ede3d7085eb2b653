from django.db import models


class Order(models.Model):
    reference = models.CharField(max_length=200, unique=True)
    customer_email = models.EmailField()
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=20, default="new")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.reference


class Payment(models.Model):
    # No unique constraint: an order may legitimately be charged again after a refund.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="payments")
    amount_cents = models.PositiveIntegerField()
    provider_ref = models.CharField(max_length=64)
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Email(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="emails")
    template = models.CharField(max_length=40)
    to = models.EmailField()
    task_id = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order", "template"], name="one_email_per_template")]


class Reservation(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="reservations")
    sku = models.CharField(max_length=40)
    quantity = models.PositiveIntegerField()
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)


class Shipment(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    items = models.PositiveIntegerField()
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
